"""Held-out identities, verification scoring and early stopping for model selection."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from facerec.config import TrainParams
from facerec.data.aligned import read_aligned_manifest
from facerec.training.loop import train_model
from facerec.training.selection import EarlyStopping, hold_out_identities


def _faces(identities: int, per_identity: int) -> pd.DataFrame:
    return pd.DataFrame({"identity": [f"p{i:02d}" for i in range(identities) for _ in range(per_identity)],
                         "path": [f"p{i:02d}/{j}.jpg" for i in range(identities) for j in range(per_identity)]})


def test_held_out_identities_are_whole_people_chosen_by_the_seed():
    faces = _faces(10, 3)
    train, held = hold_out_identities(faces, 3, seed=0)
    assert held["identity"].nunique() == 3 and set(train["identity"]).isdisjoint(held["identity"])
    assert len(train) + len(held) == len(faces)
    again, _ = hold_out_identities(faces, 3, seed=0)
    assert train.equals(again)
    assert not hold_out_identities(faces, 3, seed=1)[1].equals(held)
    with pytest.raises(ValueError, match="leaves fewer than 2 to train on"):
        hold_out_identities(faces, 9, seed=0)


def test_early_stopping_counts_validations_without_gain_and_keeps_the_best():
    stopping = EarlyStopping(patience=2, min_delta=0.01)
    assert stopping.update(0.5, step=10) and not stopping.should_stop
    assert not stopping.update(0.505, step=20)  # below min_delta
    assert stopping.update(0.6, step=30)
    assert not stopping.update(0.55, step=40) and not stopping.should_stop
    assert not stopping.update(0.59, step=50) and stopping.should_stop
    assert (stopping.best, stopping.best_step) == (0.6, 30)
    restored = EarlyStopping(patience=2)
    restored.load_state_dict(stopping.state_dict())
    assert restored.should_stop and restored.best_step == 30


def test_training_validates_each_epoch_on_held_out_people_and_keeps_the_best(small_project, tmp_path):
    raw = yaml.safe_load((small_project / "params.yaml").read_text())["train"]
    params = TrainParams.model_validate({**raw, "epochs": 3, "batch_size": 32, "validation_identities": 3,
                                         "validation_metric": "roc_auc", "patience": 1})
    aligned_dir = small_project / "data" / "aligned" / "train"
    result = train_model(aligned_dir, read_aligned_manifest(aligned_dir), params, tmp_path / "model.pt")
    assert result.summary["identities"] == 12 - 3
    validation = result.validation
    assert 2 <= len(validation) <= 3 and validation["score"].between(0, 1).all()
    assert result.summary["validation_roc_auc"] == validation["score"].max()
    assert result.summary["best_step"] == int(validation.loc[validation["score"].idxmax(), "step"])
    if len(validation) == 2:  # stopped after one validation without gain
        assert result.summary["stopped_early"] and validation["score"].iloc[1] <= validation["score"].iloc[0]
