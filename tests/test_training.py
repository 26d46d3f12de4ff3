"""Real training steps with every margin head on the small project's aligned faces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from facerec.config import TrainParams
from facerec.data.aligned import read_aligned_manifest, read_crop_bytes
from facerec.models.checkpoints import read_checkpoint
from facerec.models.heads import build_head
from facerec.training.loop import train_model


@pytest.mark.parametrize("head", [{"type": "cosface", "margin": 0.35},
                                  {"type": "combined", "m1": 1.0, "m2": 0.3, "m3": 0.2},
                                  {"type": "adaface", "margin": 0.4}])
def test_each_head_trains_and_its_state_is_saved_with_the_checkpoint(head, small_project, tmp_path):
    raw = yaml.safe_load((small_project / "params.yaml").read_text())["train"]
    params = TrainParams.model_validate({**raw, "head": head, "epochs": 1, "batch_size": 32})
    aligned_dir = small_project / "data" / "aligned" / "train"
    result = train_model(aligned_dir, read_aligned_manifest(aligned_dir), params, tmp_path / "model.pt")
    losses = result.history["loss"]
    assert torch.isfinite(torch.tensor(losses.to_numpy())).all() and len(losses) >= 3
    saved = read_checkpoint(tmp_path / "model.pt")["head_state_dict"]
    assert saved["weight"].shape[0] == result.summary["identities"]
    # The saved head applies its own margin: against the same centres without a margin, every
    # target logit is lower and every other logit is the same.
    without = {"cosface": {"margin": 0.0}, "combined": {"m2": 0.0, "m3": 0.0}, "adaface": {"margin": 0.0}}
    trained, plain = (build_head(params.embedding_size, len(saved["weight"]), head_params).eval()
                      for head_params in (params.head, params.head.model_copy(update=without[head["type"]])))
    trained.load_state_dict(saved)
    plain.load_state_dict(saved)
    embeddings = torch.randn(6, params.embedding_size, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(6)
    with torch.no_grad():
        margined, unmargined = trained(embeddings, labels), plain(embeddings, labels)
    target = torch.zeros_like(margined, dtype=torch.bool)
    target[torch.arange(6), labels] = True
    assert (margined[target] < unmargined[target]).all() and torch.equal(margined[~target], unmargined[~target])
    if head["type"] == "adaface":
        # The running norm statistics moved away from their initial 20 / 100 and were saved.
        assert saved["norm_mean"].item() != 20.0 and saved["norm_std"].item() != 100.0


def _params(**changes) -> TrainParams:
    return TrainParams.model_validate({"model_name": "m", "epochs": 10, "warmup_epochs": 1.0, **changes})


def test_schedules_warm_up_linearly_then_decay_per_iteration():
    steps_per_epoch = 10
    poly = [_lr(_params(), steps_per_epoch, step) for step in range(100)]
    assert poly[0] == pytest.approx(0.1) and poly[9] == pytest.approx(1.0)  # warm-up over epoch 1
    assert poly[10] == pytest.approx(1.0) and poly[55] == pytest.approx((1 - 45 / 90) ** 2)
    cosine = _params(schedule="cosine")
    assert _lr(cosine, steps_per_epoch, 55) == pytest.approx(0.5)
    assert _lr(cosine, steps_per_epoch, 100) == pytest.approx(0)
    step = _params(schedule="step", step_epochs=[4, 8], step_gamma=0.1)
    assert [_lr(step, steps_per_epoch, s) for s in (39, 40, 79, 80)] == pytest.approx([1, 0.1, 0.1, 0.01])


def _lr(params: TrainParams, steps_per_epoch: int, step: int) -> float:
    from facerec.training.loop import lr_multiplier

    return lr_multiplier(params, steps_per_epoch)(step)


def test_weight_decay_spares_norms_biases_and_prelu_and_adamw_is_available():
    from facerec.models.backbones import build_backbone
    from facerec.training.loop import build_optimizer

    model = build_backbone("mobilefacenet")
    optimizer = build_optimizer(_params(optimizer="adamw", weight_decay=0.05), [model])
    decayed, spared = optimizer.param_groups
    assert isinstance(optimizer, torch.optim.AdamW)
    assert decayed["weight_decay"] == 0.05 and spared["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim == 1 for p in spared["params"])
    prelu = next(m for m in model.modules() if isinstance(m, torch.nn.PReLU)).weight
    assert any(p is prelu for p in spared["params"])
    assert len(decayed["params"]) + len(spared["params"]) == len(list(model.parameters()))


def _train_command(small_project, checkpoint, params_file) -> list[str]:
    import sys

    return [sys.executable, "-m", "facerec", "train", "--aligned", str(small_project / "data" / "aligned" / "train"),
            "--checkpoint", str(checkpoint), "--history", str(checkpoint.with_suffix(".csv")),
            "--live", str(checkpoint.parent / "live"), "--params", str(params_file)]


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(small_project, tmp_path):
    """SIGKILL a real training process after its first saved state; the rerun resumes from
    it and ends with exactly the weights, history and DVCLive log of a run that was never
    interrupted."""
    import signal
    import subprocess
    import time

    import pandas as pd

    raw = yaml.safe_load((small_project / "params.yaml").read_text())
    # The strong preset and a worker process: augmentation and prefetching must resume exactly too.
    # Two epochs: with people held out for evaluation and for validation, one epoch of the
    # small project is too few steps to save a state before its last.
    raw["train"].update(epochs=2, batch_size=32, checkpoint_every=2, warmup_epochs=0.5, augmentation="strong",
                        workers=1)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    whole.mkdir()
    interrupted.mkdir()
    subprocess.run(_train_command(small_project, whole / "model.pt", params_file), cwd=whole, check=True,
                   capture_output=True)

    state = interrupted / ".cache" / "facerec" / "train" / f"{raw['train']['model_name']}.pt"
    process = subprocess.Popen(_train_command(small_project, interrupted / "model.pt", params_file),
                               cwd=interrupted, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert state.exists() and not (interrupted / "model.pt").exists(), "the run was not killed mid-training"
    saved_step = torch.load(state, weights_only=True)["step"]
    resumed = subprocess.run(_train_command(small_project, interrupted / "model.pt", params_file),
                             cwd=interrupted, check=True, capture_output=True, text=True)
    assert "resuming from" in resumed.stderr + resumed.stdout and not state.exists()

    first, second = read_checkpoint(whole / "model.pt"), read_checkpoint(interrupted / "model.pt")
    for part in ("state_dict", "head_state_dict"):
        assert first[part].keys() == second[part].keys()
        assert all(torch.equal(first[part][key], second[part][key]) for key in first[part]), part
    history = pd.read_csv(interrupted / "model.csv")
    assert history.equals(pd.read_csv(whole / "model.csv")) and len(history) > saved_step >= 2
    # DVCLive's log: one row per epoch of each figure, the epochs done before the kill replayed.
    logged = sorted(path.name for path in (whole / "live" / "plots" / "metrics").glob("*.tsv"))
    assert {"loss.tsv", "train_accuracy.tsv", "lr.tsv", f"validation_{raw['train']['validation_metric']}.tsv"} \
        <= set(logged)
    for name in logged:
        assert (interrupted / "live" / "plots" / "metrics" / name).read_text() == \
            (whole / "live" / "plots" / "metrics" / name).read_text(), name
    assert pd.read_csv(whole / "live" / "plots" / "metrics" / "loss.tsv", sep="\t")["step"].tolist() == [1, 2]
    summary = json.loads((interrupted / "live" / "metrics.json").read_text())
    assert summary["step"] == 2 and summary["loss"] == pytest.approx(
        history[history["epoch"] > 1]["loss"].mean(), abs=1e-5)


@pytest.mark.slow  # two torchrun processes on 2 cores (~30 s); tests/test_partial_fc.py covers the sharded loss
def test_torchrun_trains_with_two_gloo_processes_and_sharded_partial_fc(small_project, tmp_path):
    """Two real processes under torchrun: each trains on half of every batch and holds half
    of the class centres (sampled at 0.5); rank 0 writes one checkpoint with every centre."""
    import re
    import shutil
    import subprocess
    import sys

    import pandas as pd

    raw = yaml.safe_load((small_project / "params.yaml").read_text())
    raw["train"].update(epochs=1, batch_size=16, sample_rate=0.5, num_threads=1, workers=0,
                        backbone="iresnet18", stem_stride=2, validation_identities=0)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "facerec", "train",
               *_train_command(small_project, tmp_path / "model.pt", params_file)[4:]]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r'"processes":\s*2\b', done.stdout), done.stdout[-2000:]  # rank 0's summary
    checkpoint = read_checkpoint(tmp_path / "model.pt")
    assert checkpoint["head_state_dict"]["weight"].shape[0] == len(checkpoint["identities"]) == 12
    assert checkpoint["options"] == {"stem_stride": 2}
    faces = len(read_aligned_manifest(small_project / "data" / "aligned" / "train"))
    history = pd.read_csv(tmp_path / "model.csv")
    assert len(history) == faces // 32 and history["loss"].notna().all()


def test_insightface_train_rec_is_a_training_source(small_project, tmp_path):
    """The small project's aligned faces packed into an insightface-layout train.rec train
    the same way their folder does: one class per person, every face read back."""
    from facerec.data.recordio import pack_record, write_recordio
    from facerec.pipeline.train import train

    aligned_dir = small_project / "data" / "aligned" / "train"
    manifest = read_aligned_manifest(aligned_dir).sort_values("path")
    label_of = {name: index for index, name in enumerate(sorted(manifest["identity"].unique()))}
    records = [(0, pack_record([len(manifest) + 1, len(manifest) + 1 + len(label_of)], b""))]
    jpegs = read_crop_bytes(aligned_dir, list(manifest["path"]))
    records += [(key, pack_record(label_of[row.identity], jpeg, id=key))
                for key, (row, jpeg) in enumerate(zip(manifest.itertuples(), jpegs), start=1)]
    write_recordio(tmp_path / "train.rec", records)

    raw = yaml.safe_load((small_project / "params.yaml").read_text())["train"]
    params = TrainParams.model_validate({**raw, "epochs": 1, "batch_size": 32, "validation_identities": 0})
    summary = train(tmp_path / "train.rec", tmp_path / "model.pt", tmp_path / "history.csv", params).summary
    assert summary["faces"] == len(manifest) and summary["identities"] == len(label_of)
    assert read_checkpoint(tmp_path / "model.pt")["identities"] == [f"{index:07d}" for index in range(len(label_of))]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_gpu_training_in_mixed_precision_with_a_grad_scaler_for_fp16(precision, small_project, tmp_path):
    """On a GPU: fp16 autocast with a gradient scaler (bf16 without) trains to finite losses."""
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA GPU: run them with -m gpu on a GPU machine")
    raw = yaml.safe_load((small_project / "params.yaml").read_text())["train"]
    params = TrainParams.model_validate({**raw, "epochs": 1, "batch_size": 32, "device": "cuda",
                                         "precision": precision, "backbone": "iresnet18"})
    aligned_dir = small_project / "data" / "aligned" / "train"
    result = train_model(aligned_dir, read_aligned_manifest(aligned_dir), params, tmp_path / "model.pt")
    assert torch.isfinite(torch.tensor(result.history["loss"].to_numpy())).all()
    assert read_checkpoint(tmp_path / "model.pt")["state_dict"]["fc.weight"].device.type == "cpu"
