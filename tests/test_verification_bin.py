"""insightface .bin verification sets: read safely, scored like the LFW protocol."""

from __future__ import annotations

import json
import os
import pickle

import cv2
import numpy as np
import pytest
import yaml

from facerec.config import BinSet, ComputeParams, EvaluateParams
from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.data.lfw import read_pairs
from facerec.data.verification_bin import VerificationBinError, read_verification_bin, write_verification_bin
from facerec.evaluation.sets import build_evaluation_set
from facerec.models.zoo import ModelRef
from facerec.pipeline.evaluate import evaluate


def _png(crop: np.ndarray) -> bytes:
    return cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_the_small_projects_lfw_pairs_as_a_bin_score_as_the_evaluate_stage_did(small_project, tmp_path):
    """The aligned faces of the small project's LFW pairs, packed losslessly into lfw.bin in
    pairs.txt order, as an evaluation set of kind bin: its 10 contiguous folds are pairs.txt's
    folds, so the trained model's accuracy on the .bin is the evaluate stage's LFW accuracy."""
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    model_name = params["train"]["model_name"]
    stage = json.loads((small_project / "metrics" / "evaluate" / "lfw" / f"{model_name}.json").read_text())
    assert stage["lfw_pairs_missing"] == 0
    aligned_dir = small_project / "data" / "aligned" / "lfw"
    manifest = read_aligned_manifest(aligned_dir).set_index("source")
    pairs = read_pairs(params["evaluate"]["sets"]["lfw"]["pairs"])
    sources = [path for pair in pairs.itertuples() for path in (pair.path1, pair.path2)]
    crops = load_crops(aligned_dir, manifest.loc[sources, "path"].tolist()).permute(0, 2, 3, 1).numpy()
    write_verification_bin(tmp_path / "lfw.bin", [_png(crop) for crop in crops], pairs["genuine"].tolist())

    evaluation = build_evaluation_set("lfw_bin", BinSet(kind="bin", path=tmp_path / "lfw.bin"), None, None, None)
    ours = ModelRef(model_name, None, small_project / "models" / model_name / "model.pt")
    metrics, roc = evaluate(ours, evaluation, EvaluateParams(**params["evaluate"]), ComputeParams())
    assert metrics["kind"] == "bin" and metrics["bin_pairs"] == len(pairs)
    assert metrics["bin_accuracy"] == pytest.approx(stage["lfw_accuracy"], abs=1e-12)
    assert metrics["bin_accuracy_std"] == pytest.approx(stage["lfw_accuracy_std"], abs=1e-12)
    # The stage embeds these faces in other batches (each face once, beside View 1's faces):
    # last-bit float differences may flip a few of the 120×120 genuine-impostor comparisons
    # (1/14,400 each); up to four.
    assert metrics["roc_auc"] == pytest.approx(stage["roc_auc"], abs=3e-4)
    assert roc["tpr"].is_monotonic_increasing and roc["fpr"].iloc[-1] == 1.0


class _Exploit:
    """A pickle that runs a shell command when loaded by a plain pickle.load."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_asks_for_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "agedb_30.bin"
    bad.write_bytes(pickle.dumps(([b"x", b"y"], [_Exploit(marker)])))
    with pytest.raises(VerificationBinError, match=r"agedb_30\.bin.*asks for (posix|os)\.system"):
        read_verification_bin(bad)
    assert not marker.exists()


@pytest.mark.parametrize("payload, reason", [
    (([b"a", b"b", b"c"], [True]), "3 images for 1 pairs"),
    (([b"a", b"b"], [1]), "issame must be a list of bools"),
    ({"images": []}, "expected a pair"),
])
def test_malformed_sets_are_errors_naming_the_file(tmp_path, payload, reason):
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(VerificationBinError, match=f"cfp_fp.bin.*{reason}"):
        read_verification_bin(path)


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "lfw.bin"
    write_verification_bin(path, [b"a", b"b"], [True])
    path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(VerificationBinError, match="lfw.bin: not loaded"):
        read_verification_bin(path)
