"""Evaluate an embedding model on LFW: View 2 10-fold accuracy, all-pairs ROC, Rank-k."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from facerec.metrics import identification_metrics, k_fold_accuracy, roc_curve, verification_metrics

log = logging.getLogger(__name__)


def protocol_faces(aligned: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """The aligned faces that appear in the protocol's pairs (the evaluation set), in path order."""
    needed = set(pairs["path1"]) | set(pairs["path2"])
    return aligned[aligned["source"].isin(needed)].sort_values("source").reset_index(drop=True)


def protocol_scores(pairs: pd.DataFrame, embeddings: dict[str, np.ndarray]) -> pd.DataFrame:
    """Cosine scores of the protocol pairs whose two faces were both aligned.

    ``embeddings`` maps an image's source path (relative to the LFW images root) to its
    L2-normalised embedding. Pairs with a missing face are dropped here and counted by the caller.
    """
    present = pairs["path1"].isin(embeddings) & pairs["path2"].isin(embeddings)
    scored = pairs[present].copy()
    first = np.stack([embeddings[p] for p in scored["path1"]]) if len(scored) else np.zeros((0, 1))
    second = np.stack([embeddings[p] for p in scored["path2"]]) if len(scored) else np.zeros((0, 1))
    scored["score"] = np.einsum("ij,ij->i", first, second)
    return scored


def all_pairs_scores(embeddings: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of every unordered pair of distinct faces (genuine = same identity)."""
    rows, columns = np.triu_indices(len(embeddings), k=1)
    scores = np.empty(rows.size, dtype=np.float32)
    chunk = 5_000_000
    for start in range(0, rows.size, chunk):
        r, c = rows[start:start + chunk], columns[start:start + chunk]
        scores[start:start + chunk] = np.einsum("ij,ij->i", embeddings[r], embeddings[c])
    return scores, identities[rows] == identities[columns]


def gallery_probe_split(sources: pd.Series, identities: pd.Series) -> np.ndarray:
    """Boolean gallery mask: per identity with 2+ faces, its lexicographically first image is
    the gallery and the rest are probes; identities with one face take no part (mask False
    and excluded by the caller). Independent of directory listing order."""
    frame = pd.DataFrame({"source": sources.to_numpy(), "identity": identities.to_numpy()})
    first = frame.sort_values("source").groupby("identity")["source"].transform("first")
    return (frame["source"] == first.reindex(frame.index)).to_numpy()


def evaluate_lfw(aligned: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame,
                 ) -> tuple[dict, pd.DataFrame]:
    """All LFW metrics for one model; returns (metrics, roc curve frame for plotting).

    ``aligned`` lists the evaluation faces (see :func:`protocol_faces`), row-aligned with
    ``embeddings``. The 10-fold accuracy follows pairs.txt; ROC-AUC, EER, accuracy and
    TAR@FAR use every pair that can be formed among the evaluation faces; Rank-1/5 use
    :func:`gallery_probe_split` on them.
    """
    by_source = dict(zip(aligned["source"], embeddings))
    scored = protocol_scores(pairs, by_source)
    missing = len(pairs) - len(scored)
    if missing:
        log.warning("%d of %d LFW pairs have an undetected face and are not scored", missing, len(pairs))
    accuracy, accuracy_std = k_fold_accuracy(scored["score"].to_numpy(), scored["genuine"].to_numpy(),
                                             scored["fold"].to_numpy())
    identities = aligned["identity"].to_numpy()
    all_scores, all_labels = all_pairs_scores(embeddings, identities)
    metrics = {"lfw_accuracy": accuracy, "lfw_accuracy_std": accuracy_std}
    metrics.update(verification_metrics(all_scores, all_labels))
    fpr, tpr, _ = roc_curve(all_scores, all_labels)
    del all_scores, all_labels

    counts = aligned.groupby("identity")["source"].transform("size").to_numpy()
    repeated = counts >= 2
    gallery = gallery_probe_split(aligned["source"], aligned["identity"]) & repeated
    probe = ~gallery & repeated
    metrics.update(identification_metrics(embeddings[gallery], identities[gallery],
                                          embeddings[probe], identities[probe]))
    metrics.update({
        "lfw_pairs_scored": int(len(scored)),
        "lfw_pairs_missing": int(missing),
        "faces": int(len(aligned)),
        "genuine_pairs": int(aligned["identity"].value_counts().map(lambda n: n * (n - 1) // 2).sum()),
        "gallery_faces": int(gallery.sum()),
        "probe_faces": int(probe.sum()),
    })
    return metrics, roc_for_plot(fpr, tpr)


def roc_for_plot(fpr: np.ndarray, tpr: np.ndarray, points: int = 500) -> pd.DataFrame:
    """The ROC resampled on a log-spaced FPR grid (1e-6..1), small enough for dvc plots."""
    grid = np.unique(np.r_[np.logspace(-6, 0, points), fpr[-1]])
    return pd.DataFrame({"fpr": grid, "tpr": np.interp(grid, fpr, tpr)})
