"""Verification and identification metrics as face-recognition papers report them.

Conventions: a *score* is a similarity (higher = more likely the same person); a pair is
declared genuine when ``score >= threshold``. Labels are 1 (genuine, same identity) or
0 (impostor).
"""

from __future__ import annotations

import numpy as np

FAR_TARGETS = {"tar_at_far_1e-2": 1e-2, "tar_at_far_1e-3": 1e-3, "tar_at_far_1e-4": 1e-4}


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest threshold first.

    The first point is (0, 0) with threshold +inf, as in scikit-learn. Unlike
    scikit-learn's default, collinear points are kept, so the curve has a vertex at every
    distinct score: TAR@FAR and best accuracy are read exactly, not interpolated.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.size} vs {labels.size}")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"need both genuine and impostor pairs, got {positives} and {negatives}")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # The last index of each run of equal scores: ties move the curve in one step.
    last_of_run = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_labels)[last_of_run]
    false_positives = (last_of_run + 1) - true_positives
    tpr = np.r_[0.0, true_positives / positives]
    fpr = np.r_[0.0, false_positives / negatives]
    thresholds = np.r_[np.inf, sorted_scores[last_of_run]]
    return fpr, tpr, thresholds


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The rate where false accepts equal false rejects (FPR = 1 − TPR), linearly
    interpolated along the ROC segment on which the two cross."""
    difference = fpr - (1.0 - tpr)  # rises from −1 at (0, 0) to +1 at (1, 1)
    crossing = int(np.argmax(difference >= 0))
    if crossing == 0:
        return float(fpr[0])
    d0, d1 = difference[crossing - 1], difference[crossing]
    weight = -d0 / (d1 - d0)
    return float(fpr[crossing - 1] + weight * (fpr[crossing] - fpr[crossing - 1]))


def best_accuracy(fpr: np.ndarray, tpr: np.ndarray, positives: int, negatives: int) -> tuple[float, int]:
    """The highest accuracy of any single threshold, and the ROC index where it is reached."""
    correct = tpr * positives + (1.0 - fpr) * negatives
    index = int(np.argmax(correct))
    return float(correct[index] / (positives + negatives)), index


def verification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float | None]:
    """ROC-AUC, EER, best-threshold accuracy and TAR at FAR 1e-2/1e-3/1e-4.

    TAR@FAR is the highest true-accept rate of any threshold whose false-accept rate is at
    most the target, read on the exact ROC. It is ``None`` where there are fewer than
    1/FAR impostor pairs: with fewer, that operating point cannot be measured.
    """
    labels = np.asarray(labels).ravel().astype(bool)
    fpr, tpr, _ = roc_curve(scores, labels)
    return metrics_from_roc(fpr, tpr, int(labels.sum()), int((~labels).sum()))


def metrics_from_roc(fpr: np.ndarray, tpr: np.ndarray, positives: int, negatives: int
                     ) -> dict[str, float | None]:
    """:func:`verification_metrics` of an ROC already computed by :func:`roc_curve`."""
    result: dict[str, float | None] = {
        "roc_auc": float(np.trapezoid(tpr, fpr)),
        "eer": equal_error_rate(fpr, tpr),
        "accuracy": best_accuracy(fpr, tpr, positives, negatives)[0],
    }
    for key, far in FAR_TARGETS.items():
        measurable = negatives * far >= 1.0
        result[key] = float(tpr[fpr <= far].max()) if measurable else None
    return result


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The similarity threshold of highest accuracy on these pairs (the highest such
    threshold where several tie)."""
    labels = np.asarray(labels).astype(bool)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    _, index = best_accuracy(fpr, tpr, int(labels.sum()), int((~labels).sum()))
    return float(thresholds[index])


def k_fold_accuracy(scores: np.ndarray, labels: np.ndarray, folds: np.ndarray) -> tuple[float, float]:
    """LFW's protocol: for each fold, pick the threshold of best accuracy on the other folds,
    score this fold with it. Returns the mean and (population) standard deviation over folds."""
    scores, labels, folds = np.asarray(scores), np.asarray(labels).astype(bool), np.asarray(folds)
    accuracies = []
    for fold in np.unique(folds):
        held_out = folds == fold
        threshold = best_threshold(scores[~held_out], labels[~held_out])
        accuracies.append(float(np.mean((scores[held_out] >= threshold) == labels[held_out])))
    return float(np.mean(accuracies)), float(np.std(accuracies))


def identification_metrics(gallery_emb: np.ndarray, gallery_ids, probe_emb: np.ndarray,
                           probe_ids, chunk_size: int = 4096) -> dict[str, float]:
    """Closed-set Rank-1 and Rank-5 by cosine similarity.

    An identity's score for a probe is its best-matching gallery embedding. The rank of the
    true identity counts identities scoring strictly higher, so ties are resolved in the
    probe's favour. Every probe identity must be in the gallery.
    """
    gallery = _l2_normalise(gallery_emb)
    probes = _l2_normalise(probe_emb)
    identities, gallery_index = np.unique(np.asarray(gallery_ids), return_inverse=True)
    lookup = {identity: index for index, identity in enumerate(identities)}
    unknown = sorted({p for p in probe_ids if p not in lookup})
    if unknown:
        raise ValueError(f"probe identities missing from the gallery: {unknown[:5]}")
    truth = np.array([lookup[p] for p in probe_ids])
    # Gallery grouped by identity, so one reduceat takes each identity's best match.
    order = np.argsort(gallery_index, kind="stable")
    gallery = gallery[order]
    starts = np.r_[0, np.flatnonzero(np.diff(gallery_index[order])) + 1]
    ranks = np.empty(len(truth), dtype=np.int64)
    for start in range(0, len(truth), chunk_size):
        per_identity = np.maximum.reduceat(probes[start:start + chunk_size] @ gallery.T, starts, axis=1)
        true_score = per_identity[np.arange(per_identity.shape[0]), truth[start:start + chunk_size]]
        ranks[start:start + chunk_size] = (per_identity > true_score[:, None]).sum(1) + 1
    return {"rank1": float(np.mean(ranks <= 1)), "rank5": float(np.mean(ranks <= 5))}


def _l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
