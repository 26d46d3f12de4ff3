"""Real training steps with every margin head on the small project's aligned faces."""

from __future__ import annotations

import pytest
import torch
import yaml

from facerec.config import TrainParams
from facerec.data.aligned import read_aligned_manifest
from facerec.training import train_model
from facerec.zoo import read_checkpoint


@pytest.mark.parametrize("head", [{"type": "cosface", "margin": 0.35},
                                  {"type": "combined", "m1": 1.0, "m2": 0.3, "m3": 0.2},
                                  {"type": "adaface", "margin": 0.4}])
def test_each_head_trains_and_its_state_is_saved_with_the_checkpoint(head, small_project, tmp_path):
    raw = yaml.safe_load((small_project / "params.yaml").read_text())["train"]
    params = TrainParams.model_validate({**raw, "head": head, "epochs": 1, "batch_size": 32})
    aligned_dir = small_project / "data" / "aligned" / "train"
    result = train_model(aligned_dir, read_aligned_manifest(aligned_dir), params, tmp_path / "model.pt")
    losses = result.history["loss"]
    assert torch.isfinite(torch.tensor(losses.to_numpy())).all() and len(losses) >= 5
    saved = read_checkpoint(tmp_path / "model.pt")["head_state_dict"]
    assert saved["weight"].shape[0] == result.summary["identities"]
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
    assert _lr(cosine, steps_per_epoch, 55) == pytest.approx(0.5) and _lr(cosine, steps_per_epoch, 100) == pytest.approx(0)
    step = _params(schedule="step", step_epochs=[4, 8], step_gamma=0.1)
    assert [_lr(step, steps_per_epoch, s) for s in (39, 40, 79, 80)] == pytest.approx([1, 0.1, 0.1, 0.01])


def _lr(params: TrainParams, steps_per_epoch: int, step: int) -> float:
    from facerec.training import lr_multiplier

    return lr_multiplier(params, steps_per_epoch)(step)


def test_weight_decay_spares_norms_biases_and_prelu_and_adamw_is_available():
    from facerec.backbones import build_backbone
    from facerec.training import build_optimizer

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
            "--params", str(params_file)]


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(small_project, tmp_path):
    """SIGKILL a real training process after its first saved state; the rerun resumes from
    it and ends with exactly the weights and history of a run that was never interrupted."""
    import signal
    import subprocess
    import time

    import pandas as pd

    raw = yaml.safe_load((small_project / "params.yaml").read_text())
    raw["train"].update(epochs=2, batch_size=32, checkpoint_every=3, warmup_epochs=0.5)
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
    assert f"resuming from" in resumed.stderr + resumed.stdout and not state.exists()

    first, second = read_checkpoint(whole / "model.pt"), read_checkpoint(interrupted / "model.pt")
    for part in ("state_dict", "head_state_dict"):
        assert first[part].keys() == second[part].keys()
        assert all(torch.equal(first[part][key], second[part][key]) for key in first[part]), part
    history = pd.read_csv(interrupted / "model.csv")
    assert history.equals(pd.read_csv(whole / "model.csv")) and len(history) > saved_step >= 3
