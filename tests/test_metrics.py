"""facerec.evaluation.metrics agrees with scikit-learn and with brute force on the same scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from facerec.evaluation.metrics import (
    ImpostorTally,
    identification_metrics,
    k_fold_accuracy,
    open_set_metrics,
    roc_curve,
    verification_metrics,
)


def _scores(seed: int, genuine: int, impostor: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    scores = np.r_[rng.normal(0.6, 0.15, genuine), rng.normal(0.1, 0.15, impostor)]
    if ties:
        scores = np.round(scores, 2)
    labels = np.r_[np.ones(genuine, bool), np.zeros(impostor, bool)]
    order = rng.permutation(scores.size)
    return scores[order], labels[order]


@pytest.mark.parametrize("ties", [False, True])
def test_roc_auc_and_tar_at_far_match_sklearn_roc(ties):
    scores, labels = _scores(0, 3000, 20000, ties)
    metrics = verification_metrics(scores, labels)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    fpr, tpr, _ = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    for key, far in [("tar_at_far_1e-2", 1e-2), ("tar_at_far_1e-3", 1e-3), ("tar_at_far_1e-4", 1e-4)]:
        assert metrics[key] == pytest.approx(tpr[fpr <= far].max(), abs=1e-12)
    ours_fpr, ours_tpr, thresholds = roc_curve(scores, labels, chunk_size=997)
    # Every vertex of ours is one of scikit-learn's, reached by its threshold...
    theirs = set(zip(fpr.round(12), tpr.round(12)))
    assert all(point in theirs for point in zip(ours_fpr.round(12), ours_tpr.round(12)))
    assert all((scores[~labels] >= t).mean() == pytest.approx(f) and (scores[labels] >= t).mean() == pytest.approx(r)
               for f, r, t in zip(ours_fpr, ours_tpr, thresholds))
    # ...and each of theirs that ours leaves out lies on one of our horizontal segments.
    span = pd.DataFrame({"tpr": ours_tpr.round(12), "fpr": ours_fpr}).groupby("tpr")["fpr"].agg(["min", "max"])
    assert set(tpr.round(12)) <= set(span.index)
    lowest, highest = span.loc[tpr.round(12), "min"].to_numpy(), span.loc[tpr.round(12), "max"].to_numpy()
    assert np.all((lowest <= fpr + 1e-12) & (fpr <= highest + 1e-12))
    assert len(ours_fpr) < len(fpr)


def _searched(genuine: np.ndarray, impostors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tally's counts the slow, obvious way: a binary search of every impostor among
    the distinct genuine values (how many at or below it; equal to the one below it?)."""
    values = np.unique(genuine)
    at_or_below = np.searchsorted(values, impostors, side="right")
    tied = (at_or_below > 0) & (values[np.maximum(at_or_below - 1, 0)] == impostors)
    return (np.bincount(at_or_below, minlength=values.size + 1),
            np.bincount(at_or_below[tied] - 1, minlength=values.size))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decimals", [None, 3, 1])  # None: no ties; 1: a few values, ties everywhere
@pytest.mark.parametrize("buckets", [None, 1, 7, 50])  # few buckets: many values share one (binary search)
def test_tally_counts_are_those_of_a_binary_search_of_every_impostor(dtype, decimals, buckets):
    rng = np.random.default_rng(11)
    drawn = rng.normal(0.5, 0.2, 2000)
    # Impostors equal to genuine values, both signs of zero, and scores beyond every genuine one.
    impostors = np.r_[rng.normal(0.0, 0.3, 30000), drawn[:500], 0.0, -0.0, -np.inf, np.inf, 5.0, -5.0]
    genuine = np.r_[drawn, 0.0]
    if decimals is not None:
        genuine, impostors = np.round(genuine, decimals), np.round(impostors, decimals)
    genuine, impostors = genuine.astype(dtype), rng.permutation(impostors.astype(dtype))
    tally = ImpostorTally(genuine, buckets=buckets)
    for chunk in np.array_split(impostors, 7):  # any chunking counts the same
        tally.add_impostors(chunk)
    at_or_below, ties = _searched(genuine, impostors)
    np.testing.assert_array_equal(tally.at_or_below, at_or_below)
    np.testing.assert_array_equal(tally.ties, ties)
    assert tally.impostors == impostors.size and ties.sum() >= 500


def test_placeholders_are_left_out_of_the_tally():
    genuine, impostors = np.array([0.2, 0.5, 0.9]), np.array([0.1, 0.5, 0.95])
    tally = ImpostorTally(genuine)
    tally.add_impostors(np.r_[impostors, np.inf, np.inf], placeholders=2)
    np.testing.assert_array_equal(tally.at_or_below, _searched(genuine, impostors)[0])
    assert tally.impostors == 3


@pytest.mark.parametrize("genuine, impostors", [
    ([0.3], [0.1]),                   # one pair each
    ([0.1], [0.3]),                   # ... the wrong way round
    ([0.4, 0.4], [0.4, 0.4, 0.4]),    # every score equal: the chance diagonal
    ([1.0, -1.0], [0.0]),
    ([0.5, 0.7, 0.7], [0.7, 0.7, 0.2, 0.9]),
])
def test_tiny_and_tied_sets_match_sklearn(genuine, impostors):
    scores = np.r_[genuine, impostors]
    labels = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostors), bool)]
    assert verification_metrics(scores, labels)["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-15)
    fpr, tpr, thresholds = roc_curve(scores, labels)
    for f, r, t in zip(fpr, tpr, thresholds):
        assert f == np.mean(scores[~labels] >= t) and r == np.mean(scores[labels] >= t)
    sk_fpr, sk_tpr, _ = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    assert set(zip(fpr, tpr)) <= set(zip(sk_fpr, sk_tpr))


def test_all_equal_scores_are_the_chance_diagonal():
    scores, labels = np.full(10_000, 0.25), np.arange(10_000) % 3 == 0
    metrics = verification_metrics(scores, labels)
    assert metrics["roc_auc"] == 0.5 and metrics["eer"] == pytest.approx(0.5)
    assert metrics["tar_at_far_1e-3"] == 0.0  # the only threshold that accepts anyone accepts everyone


def test_nan_scores_are_refused():
    with pytest.raises(ValueError, match="1 of 2 impostor scores are NaN"):
        verification_metrics(np.array([0.3, np.nan, 0.5, 0.1]), np.array([1, 0, 1, 0]))
    with pytest.raises(ValueError, match="genuine scores are NaN"):
        ImpostorTally(np.array([0.3, np.nan]))


def test_eer_is_where_false_accepts_equal_false_rejects():
    scores, labels = _scores(1, 5000, 5000)
    eer = verification_metrics(scores, labels)["eer"]
    thresholds = np.unique(scores)
    far = np.array([(scores[~labels] >= t).mean() for t in thresholds])
    frr = np.array([(scores[labels] < t).mean() for t in thresholds])
    closest = np.argmin(np.abs(far - frr))
    assert abs(eer - (far[closest] + frr[closest]) / 2) < 2e-3


def test_accuracy_is_the_best_single_threshold_accuracy():
    scores, labels = _scores(2, 400, 600, ties=True)
    brute = max(np.mean((scores >= t) == labels) for t in np.r_[np.unique(scores), np.inf])
    assert verification_metrics(scores, labels)["accuracy"] == pytest.approx(brute)


def test_tar_at_far_is_null_without_enough_impostor_pairs():
    scores, labels = _scores(3, 300, 3000)
    metrics = verification_metrics(scores, labels)
    assert metrics["tar_at_far_1e-2"] is not None and metrics["tar_at_far_1e-3"] is not None
    assert metrics["tar_at_far_1e-4"] is None


def test_perfect_separation_gives_perfect_figures():
    metrics = verification_metrics(np.r_[np.full(10, 0.9), np.full(20000, 0.1)],
                                   np.r_[np.ones(10), np.zeros(20000)])
    assert metrics["roc_auc"] == 1.0 and metrics["eer"] == 0.0 and metrics["accuracy"] == 1.0
    assert metrics["tar_at_far_1e-4"] == 1.0


def test_k_fold_accuracy_picks_each_threshold_on_the_other_folds():
    scores, labels = _scores(4, 300, 300, ties=True)
    folds = np.arange(600) % 10
    mean, std = k_fold_accuracy(scores, labels, folds)
    # Equal training accuracies resolve to the highest threshold (the strictest one).
    candidates = np.r_[np.inf, np.unique(scores)[::-1]]
    per_fold = []
    for fold in range(10):
        train, test = folds != fold, folds == fold
        train_accuracy = [np.mean((scores[train] >= t) == labels[train]) for t in candidates]
        threshold = candidates[int(np.argmax(train_accuracy))]
        per_fold.append(np.mean((scores[test] >= threshold) == labels[test]))
    assert mean == pytest.approx(np.mean(per_fold)) and std == pytest.approx(np.std(per_fold))


def test_identification_ranks_match_brute_force():
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(30, 16))
    gallery_ids = np.repeat(np.arange(30), 2)
    gallery = centres[gallery_ids] + rng.normal(scale=0.8, size=(60, 16))
    probe_ids = rng.integers(0, 30, 200)
    probes = centres[probe_ids] + rng.normal(scale=0.8, size=(200, 16))
    result = identification_metrics(gallery, gallery_ids, probes, probe_ids, chunk_size=37)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    similarity = unit(probes) @ unit(gallery).T
    per_identity = np.stack([similarity[:, gallery_ids == i].max(1) for i in range(30)], axis=1)
    ranks = (per_identity > per_identity[np.arange(200), probe_ids][:, None]).sum(1) + 1
    assert result == {"rank1": pytest.approx(np.mean(ranks <= 1)), "rank5": pytest.approx(np.mean(ranks <= 5))}
    assert 0 < result["rank1"] < result["rank5"] < 1


def test_identification_refuses_probes_of_unknown_identities():
    with pytest.raises(ValueError, match="missing from the gallery"):
        identification_metrics(np.eye(2), ["a", "b"], np.eye(2), ["a", "c"])


def _unit(angle_degrees: float) -> np.ndarray:
    angle = np.radians(angle_degrees)
    return np.array([np.cos(angle), np.sin(angle)], dtype=np.float32)


def test_open_set_fnir_at_fpir_counts_misses_at_the_threshold_the_nonmated_searches_set():
    gallery = np.stack([_unit(0), _unit(90)])
    # Mated searches: A found at cosine 0.98, A found at 0.77, B matched to A (a miss at any threshold).
    mated = np.stack([_unit(11), _unit(40), _unit(30)])
    # Ten strangers; best gallery scores cos(10°)=0.985, cos(35°)=0.82, then eight far below.
    strangers = np.stack([_unit(10), _unit(35), *[_unit(-80 - i) for i in range(8)]])
    figures = open_set_metrics(gallery, ["A", "B"], mated, ["A", "A", "B"], strangers)
    # FPIR 10 % allows one false positive: the threshold sits just above 0.82, so only the
    # 0.98 search is a hit. FPIR 1 % allows none: the threshold is above 0.985, so all miss.
    assert figures["fnir_at_fpir_1e-1"] == pytest.approx(2 / 3)
    assert figures["fnir_at_fpir_1e-2"] == 1.0


def test_open_set_metrics_match_a_search_written_out_by_hand():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 16))
    gallery_ids = np.arange(30)
    gallery = centres + 0.3 * rng.normal(size=centres.shape)
    mated_ids = rng.integers(0, 30, 200)
    mated = centres[mated_ids] + 0.6 * rng.normal(size=(200, 16))
    strangers = rng.normal(size=(150, 16))
    figures = open_set_metrics(gallery, gallery_ids, mated, mated_ids, strangers)

    def normed(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    stranger_best = (normed(strangers) @ normed(gallery).T).max(1)
    similarity = normed(mated) @ normed(gallery).T
    for key, target in (("fnir_at_fpir_1e-2", 0.01), ("fnir_at_fpir_1e-1", 0.1)):
        # The lowest threshold among the observed scores (and just above them) with FPIR <= target.
        candidates = sorted(np.r_[stranger_best, np.nextafter(stranger_best, np.inf)])
        threshold = next(t for t in candidates if np.mean(stranger_best >= t) <= target)
        misses = [not (similarity[i].argmax() == mated_ids[i] and similarity[i].max() >= threshold)
                  for i in range(200)]
        assert figures[key] == pytest.approx(np.mean(misses))
    assert 0 < figures["fnir_at_fpir_1e-2"] < 1 and figures["fnir_at_fpir_1e-1"] <= figures["fnir_at_fpir_1e-2"]


def test_open_set_metrics_without_nonmated_searches_have_no_threshold():
    gallery = np.eye(2, dtype=np.float32)
    figures = open_set_metrics(gallery, ["A", "B"], gallery, ["A", "B"], np.zeros((0, 2), np.float32))
    assert figures == {"fnir_at_fpir_1e-2": None, "fnir_at_fpir_1e-1": None}
