"""Same code, same inputs, same outputs: a rerun changes only the timings, and the settings
that dvc.yaml leaves out as speed-only (RESULT_NEUTRAL in facerec/config.py) do not change a
result. Where each of those is shown:

- detect.batch_size, detect.cache, compute.workers: tests/test_detect_determinism.py (the
  manifests byte for byte);
- compute.engine, compute.scheduler (and compute.workers for the peers): tests/test_engine.py
  (a Dask cluster detects the same bytes and embeds the same faces as local processes);
- train.workers: tests/test_batches.py (batches do not depend on the worker count);
- train.checkpoint_every: tests/test_training.py (a killed run resumes to identical weights);
- evaluate.num_threads, monitor.num_threads: below (inference on 1 or 2 threads: the same figures);
- monitor.on_drift: read by the face-monitor flow only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import run
from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.protocols import all_pairs_tally
from facerec.models.checkpoints import load_pretrained


def test_a_forced_retraining_gives_the_same_weights_and_dvc_sees_only_new_timings(project_copy):
    run(["git", "add", "-A"], project_copy)
    run(["git", "commit", "-qm", "the small project's run"], project_copy)

    repro = run(["dvc", "repro", "--force", "--single-item", "train"], project_copy).stdout
    assert "Running stage 'train'" in repro

    # The model came out bit for bit the same, so nothing after train is out of date, and
    # dvc.lock changed only in the timing file's hash...
    assert "Data and pipelines are up to date" in run(["dvc", "status"], project_copy).stdout
    before = yaml.safe_load(run(["git", "show", "HEAD:dvc.lock"], project_copy).stdout)
    after = yaml.safe_load((project_copy / "dvc.lock").read_text())
    assert after != before and _without_timings(after) == _without_timings(before)
    # ...and between the two runs of one commit, dvc metrics diff shows the timings alone.
    changed = json.loads(run(["dvc", "metrics", "diff", "--json"], project_copy).stdout)
    assert changed and all(path.startswith("metrics/timing/") for path in changed), changed


def _without_timings(lock: dict) -> dict:
    return {name: {**stage, "outs": [out for out in stage.get("outs", [])
                                     if not out["path"].startswith("metrics/timing/")]}
            for name, stage in lock["stages"].items()}


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_inference_on_one_or_two_threads_gives_the_same_figures(runtime, small_project):
    """Why evaluate.num_threads and monitor.num_threads do not rerun their stages, in either
    evaluate.runtime. The embeddings agree to 1e-5, not bit for bit: oneDNN's 1×1
    convolutions over 256 or more channels (SFace's) sum in an order that depends on the
    thread count."""
    model_name = yaml.safe_load((small_project / "params.yaml").read_text())["train"]["model_name"]
    model = load_pretrained(None, small_project / "models" / model_name / "model.pt")
    aligned = small_project / "data" / "aligned" / "lfw"
    manifest = read_aligned_manifest(aligned).iloc[:96]
    crops = load_crops(aligned, manifest["path"].tolist())
    threads = torch.get_num_threads()
    try:
        embeddings = []
        for count in (1, 2):
            torch.set_num_threads(count)
            embeddings.append(embed_crops(model, crops, batch_size=32, flip=True, runtime=runtime, num_threads=count))
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(*embeddings, atol=1e-5, rtol=0)
    one, two = (all_pairs_tally(values, manifest["identity"].to_numpy()).metrics() for values in embeddings)
    assert one == two
