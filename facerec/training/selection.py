"""Model selection during training on identities held out of the training set.

Closed-set classification accuracy says how well the classifier separates the training
people, not how well embeddings verify new ones; LFW is the test set and must not steer
training. So some identities are held out, and the model is scored by verification on
every pair of their faces (``validation_metric`` of :func:`facerec.evaluation.metrics.verification_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.protocols import all_pairs_tally


def hold_out_identities(faces: pd.DataFrame, count: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training faces, held-out faces): ``count`` identities drawn with ``seed`` are held out."""
    identities = np.array(sorted(faces["identity"].unique()))
    if count == 0:
        return faces, faces.iloc[0:0]
    if count > len(identities) - 2:
        raise ValueError(f"holding out {count} of {len(identities)} identities leaves fewer than 2 to train on")
    held = set(np.random.default_rng(seed).choice(identities, count, replace=False))
    mask = faces["identity"].isin(held)
    return faces[~mask].reset_index(drop=True), faces[mask].reset_index(drop=True)


VALIDATION_BATCH = 128  # faces per forward pass when embedding the validation people


def validation_embeddings(model: nn.Module, crops: torch.Tensor, batch_size: int = VALIDATION_BATCH) -> np.ndarray:
    """L2-normalised N×D embeddings of the held-out faces (``embed_crops``, no flip); the model
    is put back in training mode afterwards."""
    training = model.training
    embeddings = embed_crops(model, crops, batch_size=batch_size, flip=False)
    model.train(training)
    return embeddings


def embeddings_score(embeddings: np.ndarray, identities: np.ndarray, metric: str) -> float:
    """``metric`` (accuracy, roc_auc, tar_at_far_1e-2, …) of verification over every pair of
    the held-out faces' ``embeddings``."""
    value = all_pairs_tally(embeddings, identities).metrics()[metric]
    if value is None:
        raise ValueError(f"validation metric {metric} is undefined on {len(identities)} held-out faces: "
                         "hold out more identities or choose another metric")
    return float(value)


def validation_score(model: nn.Module, crops: torch.Tensor, identities: np.ndarray, metric: str,
                     batch_size: int = VALIDATION_BATCH) -> float:
    """``metric`` of verification over every pair of the held-out faces as ``model`` embeds them."""
    return embeddings_score(validation_embeddings(model, crops, batch_size), identities, metric)


@dataclass
class EarlyStopping:
    """Stop after ``patience`` validations without improving by more than ``min_delta``;
    remembers the best score and the step it was reached at."""

    patience: int
    min_delta: float = 0.0
    best: float = float("-inf")
    best_step: int = 0
    bad_validations: int = 0

    def update(self, score: float, step: int) -> bool:
        """Record a validation; True when it is the best so far."""
        if score > self.best + self.min_delta:
            self.best, self.best_step, self.bad_validations = score, step, 0
            return True
        self.bad_validations += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_validations >= self.patience

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "bad_validations": self.bad_validations}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.bad_validations = state["best"], state["best_step"], state["bad_validations"]
