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
