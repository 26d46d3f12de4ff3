"""Evaluate an embedding model on LFW: View 2 10-fold accuracy, all-pairs ROC, Rank-k."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from facerec.metrics import (FAR_TARGETS, identification_metrics, k_fold_accuracy, metrics_from_roc,
                             roc_curve, verification_metrics)

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


def all_pairs_scores(embeddings: np.ndarray, identities: np.ndarray,
                     block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Scores and labels of every unordered pair of distinct faces (genuine = same identity).

    Computed one block of rows at a time against the faces after it, so memory stays at
    one block×N similarity matrix besides the N(N−1)/2 float32 scores themselves.
    """
    scores, labels = [], []
    for start in range(0, len(embeddings), block):
        stop = min(start + block, len(embeddings))
        similarity = embeddings[start:stop] @ embeddings[start:].T
        rows, columns = np.triu_indices(stop - start, k=1, m=len(embeddings) - start)
        scores.append(similarity[rows, columns].astype(np.float32))
        labels.append(identities[start:stop][rows] == identities[start:][columns])
    return np.concatenate(scores), np.concatenate(labels)


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
    ``embeddings``. The 10-fold accuracy, ROC-AUC, EER and best accuracy follow pairs.txt;
    TAR@FAR (and the plotted ROC) use every pair that can be formed among the evaluation
    faces; Rank-1/5 use :func:`gallery_probe_split` on them.
    """
    by_source = dict(zip(aligned["source"], embeddings))
    scored = protocol_scores(pairs, by_source)
    missing = len(pairs) - len(scored)
    if missing:
        log.warning("%d of %d LFW pairs have an undetected face and are not scored", missing, len(pairs))
    accuracy, accuracy_std = k_fold_accuracy(scored["score"].to_numpy(), scored["genuine"].to_numpy(),
                                             scored["fold"].to_numpy())
    identities = aligned["identity"].to_numpy()
    metrics = {"lfw_accuracy": accuracy, "lfw_accuracy_std": accuracy_std}
    # ROC-AUC, EER and best accuracy on the protocol's balanced pairs; on all pairs the
    # impostors outnumber genuine pairs ~1000:1 and "accuracy" would only count impostors.
    metrics.update(verification_metrics(scored["score"].to_numpy(), scored["genuine"].to_numpy()))
    # TAR at low FAR needs many impostors: read it on every pair the faces can form.
    all_scores, all_labels = all_pairs_scores(embeddings, identities)
    fpr, tpr, _ = roc_curve(all_scores, all_labels)
    genuine = int(all_labels.sum())
    impostors = int(all_labels.size - genuine)
    del all_scores, all_labels
    every_pair = metrics_from_roc(fpr, tpr, genuine, impostors)
    metrics.update({key: every_pair[key] for key in FAR_TARGETS})
    metrics.update({"all_pairs_roc_auc": every_pair["roc_auc"], "all_pairs_eer": every_pair["eer"],
                    "genuine_pairs": genuine, "impostor_pairs": impostors})

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
        "gallery_faces": int(gallery.sum()),
        "probe_faces": int(probe.sum()),
    })
    return metrics, roc_for_plot(fpr, tpr)


def roc_for_plot(fpr: np.ndarray, tpr: np.ndarray, points: int = 500) -> pd.DataFrame:
    """The ROC resampled on a log-spaced FPR grid (1e-6..1), small enough for dvc plots."""
    grid = np.unique(np.r_[np.logspace(-6, 0, points), fpr[-1]])
    return pd.DataFrame({"fpr": grid, "tpr": np.interp(grid, fpr, tpr)})
