"""Verification and identification metrics as face-recognition papers report them.

Conventions: a *score* is a similarity (higher = more likely the same person); a pair is
declared genuine when ``score >= threshold``. Labels are 1 (genuine, same identity) or
0 (impostor).
"""

from __future__ import annotations

import numpy as np

FAR_TARGETS = {"tar_at_far_1e-2": 1e-2, "tar_at_far_1e-3": 1e-3, "tar_at_far_1e-4": 1e-4}
# Open-set identification as NIST FRVT reports 1:N search: misses at a false-positive rate.
FPIR_TARGETS = {"fnir_at_fpir_1e-2": 1e-2, "fnir_at_fpir_1e-1": 1e-1}


# Impostor scores are bucketed this many at a time, so that the passes over a chunk run in
# the L2 cache rather than in main memory; the few compared exactly are gathered up to
# EXACT_BATCH at a time (the per-call cost of a numpy operation is then negligible).
IMPOSTOR_CHUNK = 1 << 16
EXACT_BATCH = 1 << 20
# Buckets per distinct genuine value (at most MAX_BUCKETS): more buckets leave fewer
# impostors to compare exactly but make the bucket counts a larger, slower table.
BUCKETS_PER_VALUE = 4
MAX_BUCKETS = 1 << 20


class ImpostorTally:
    """The exact ROC of genuine scores known up front and impostor scores streamed in chunks.

    Between two consecutive distinct genuine scores the true-accept rate is constant, so
    impostor scores there only move the curve sideways: the ROC is exact with a vertex at
    every distinct genuine score (after its ties) and one where each such sideways run ends.
    It only needs, per distinct genuine score, how many impostors score above it and how
    many tie with it, never a sort of all scores.

    An impostor's place among the genuine values is found in two steps. An arithmetic map
    in the scores' own dtype (``score * scale + offset``, clipped, truncated to an integer)
    puts it in one of ``buckets`` buckets spread evenly between the lowest and the highest
    genuine value, plus one below and one above. The map is monotone (each of its float
    operations rounds monotonically), so every genuine value in a lower bucket is below the
    score and every one in a higher bucket above it: a bucket without genuine values has
    the same count of them below each of its scores, and its impostors are only counted.
    The few impostors that share a bucket with genuine values are compared with those
    values exactly. Nothing is rounded or binned into the result: the counts are those of a
    binary search of every impostor. Written by hand because it is faster than sorting all
    pairs (scikit-learn's ``roc_curve``; ``benchmarks/metrics_speed.py`` measures both) and
    than ``np.searchsorted`` of every impostor, whose binary searches miss the cache.
    Memory: the buckets (at most ``MAX_BUCKETS``), one chunk and one exact batch.
    """

    def __init__(self, genuine_scores: np.ndarray, buckets: int | None = None) -> None:
        genuine_scores = _as_scores(genuine_scores)
        if genuine_scores.size == 0:
            raise ValueError("need genuine pairs: got none")
        _refuse_nan(genuine_scores, "genuine")
        self.values, self.genuine_at = np.unique(genuine_scores, return_counts=True)  # ascending
        self.ties = np.zeros(self.values.size, dtype=np.int64)  # impostors equal to each value
        self.impostors = 0
        # Impostors compared exactly, by how many genuine values are at or below them (the
        # bucketed ones are added in `at_or_below`).
        self._exact = np.zeros(self.values.size + 1, dtype=np.int64)
        buckets = buckets or int(np.clip(BUCKETS_PER_VALUE * self.values.size, 1 << 10, MAX_BUCKETS))
        finite = self.values[np.isfinite(self.values)]
        lowest, highest = (float(finite[0]), float(finite[-1])) if finite.size else (0.0, 0.0)
        scale = buckets / (highest - lowest) if highest > lowest else 1.0
        # Small enough that score * scale + offset is finite, never inf - inf, for a finite score.
        scale = min(scale, float(np.finfo(self.values.dtype).max) / 4 / max(1.0, abs(lowest), abs(highest)))
        # Bucket 0 is below the lowest value, 1 holds it, buckets + 1 the highest, buckets + 2 above.
        self._scale = self.values.dtype.type(scale)
        self._offset = self.values.dtype.type(1.5 - lowest * scale)
        self._top = buckets + 2
        self._per_bucket = np.zeros(self._top + 1, dtype=np.int64)  # impostors per bucket
        of_value = self._bucket(self.values)
        self._in_bucket = np.bincount(of_value, minlength=self._top + 1)  # genuine values per bucket
        self._occupied = self._in_bucket > 0
        self._first = np.cumsum(self._in_bucket) - self._in_bucket  # a bucket's first value (or the next)
        self._widest = int(self._in_bucket.max())
        self._value_ends = np.r_[of_value, self._top]  # each value's bucket, then the last bucket
        self._padded = np.r_[self.values, np.array([np.nan], self.values.dtype)]  # [K] and [-1]: compare false

    @property
    def genuine(self) -> int:
        return int(self.genuine_at.sum())

    @property
    def at_or_below(self) -> np.ndarray:
        """at_or_below[k]: impostors whose score has exactly k genuine values at or below it."""
        # The bucketed impostors above value k - 1's bucket, up to value k's, have k values at
        # or below them (those in a bucket with values were compared exactly instead).
        bucketed = np.cumsum(np.where(self._occupied, 0, self._per_bucket))[self._value_ends]
        return self._exact + np.diff(bucketed, prepend=0)

    def _bucket(self, scores: np.ndarray, scaled: np.ndarray | None = None,
                out: np.ndarray | None = None) -> np.ndarray:
        """Each score's bucket, monotone in the score (``scaled`` and ``out``: work space)."""
        scaled = np.multiply(scores, self._scale, out=scaled)
        scaled += self._offset
        out = np.empty(scores.shape, np.intp) if out is None else out
        return np.clip(scaled, 0, self._top, out=out, casting="unsafe")  # clipped as floats, then truncated

    def add_impostors(self, scores: np.ndarray, placeholders: int = 0) -> None:
        """Count impostor ``scores`` (any shape, any chunk size). ``placeholders`` of them
        are +inf entries standing for pairs that are not impostors (e.g. a block's genuine
        pairs and its lower triangle): they are not counted."""
        scores = _as_scores(scores, self.values.dtype)
        _refuse_nan(scores, "impostor")
        size = min(scores.size, IMPOSTOR_CHUNK)
        scaled, bucket, occupied = np.empty(size, scores.dtype), np.empty(size, np.intp), np.empty(size, bool)
        near_scores: list[np.ndarray] = []
        near_buckets: list[np.ndarray] = []
        pending = 0
        for start in range(0, scores.size, IMPOSTOR_CHUNK):
            chunk = scores[start:start + IMPOSTOR_CHUNK]
            of_chunk = self._bucket(chunk, scaled[:chunk.size], bucket[:chunk.size])
            np.add.at(self._per_bucket, of_chunk, 1)  # bincount would build a whole table per chunk
            near = np.flatnonzero(np.take(self._occupied, of_chunk, out=occupied[:chunk.size]))
            near_scores.append(chunk[near])
            near_buckets.append(of_chunk[near])
            pending += near.size
            if pending >= EXACT_BATCH or start + IMPOSTOR_CHUNK >= scores.size:
                self._count_exactly(np.concatenate(near_scores), np.concatenate(near_buckets))
                near_scores, near_buckets, pending = [], [], 0
        self._exact[-1] -= placeholders
        self.impostors += scores.size - placeholders

    def _count_exactly(self, scores: np.ndarray, buckets: np.ndarray) -> None:
        """Impostors in buckets that hold genuine values: how many of those values are at or
        below each, and its tie, if any, with the value below."""
        at_or_below = self._first[buckets]
        at_or_below += self._padded[at_or_below] <= scores  # right where the bucket holds one value: most
        wide = np.flatnonzero(self._in_bucket[buckets] > 1)
        if wide.size:
            at_or_below[wide] = self._search(scores[wide], buckets[wide])
        self._exact += np.bincount(at_or_below, minlength=self.values.size + 1)
        tied = np.flatnonzero(self._padded[at_or_below - 1] == scores)  # [-1], below every value: NaN
        self.ties += np.bincount(at_or_below[tied] - 1, minlength=self.values.size)

    def _search(self, scores: np.ndarray, buckets: np.ndarray) -> np.ndarray:
        """How many genuine values are at or below each score: a search of its bucket only,
        all scores at once (values past the bucket are above the score, never stepped over)."""
        at_or_below = self._first[buckets]
        if self._widest <= 8:  # a few compare-and-step passes beat a binary search's bookkeeping
            for _ in range(self._widest):
                at_or_below += self._padded[at_or_below] <= scores
            return at_or_below
        left = self._in_bucket[buckets]  # values in the bucket not yet known to be above or below
        for _ in range(self._widest.bit_length()):
            half = left >> 1
            step = (self._padded[at_or_below + half] <= scores) & (left > 0)
            at_or_below += step * (half + 1)
            left = np.where(step, left - half - 1, half)
        return at_or_below

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, thresholds), highest threshold first, starting at (0, 0) with +inf;
        see :func:`roc_curve`."""
        if self.impostors == 0:
            raise ValueError("need impostor pairs: got none")
        descending = slice(None, None, -1)
        values, ties = self.values[descending], self.ties[descending]
        # Impostors at or above each value (descending), and strictly above it.
        at_least = np.cumsum(self.at_or_below[descending])[:-1]
        above = at_least - ties
        genuine_at_least = np.cumsum(self.genuine_at[descending])
        genuine_above = genuine_at_least - self.genuine_at[descending]
        # Where impostors lie between this value and the next higher one, their sideways
        # run ends at a vertex of its own (threshold: just above the value), before the value's.
        run_ends = above > np.r_[0, at_least[:-1]]

        def vertices(run_end: np.ndarray, at_value: np.ndarray) -> np.ndarray:
            pairs, keep = np.column_stack([run_end, at_value]), np.column_stack([run_ends, np.ones_like(run_ends)])
            return pairs[keep]  # row-major: each kept run end, then its value's vertex

        fpr_counts = np.r_[0, vertices(above, at_least)]
        tpr_counts = np.r_[0, vertices(genuine_above, genuine_at_least)]
        thresholds = np.r_[np.inf, vertices(np.nextafter(values, np.inf), values)]
        if at_least[-1] < self.impostors:  # impostors below the lowest genuine score
            fpr_counts, tpr_counts = np.r_[fpr_counts, self.impostors], np.r_[tpr_counts, tpr_counts[-1]]
            thresholds = np.r_[thresholds, -np.inf]
        return fpr_counts / self.impostors, tpr_counts / self.genuine, thresholds

    def metrics(self) -> dict[str, float | None]:
        """:func:`verification_metrics` of the pairs counted so far."""
        fpr, tpr, _ = self.roc()
        return metrics_from_roc(fpr, tpr, self.genuine, self.impostors)


def roc_curve(scores: np.ndarray, labels: np.ndarray, chunk_size: int = 1 << 20
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), highest threshold first, starting at (0, 0) with +inf as in
    scikit-learn.

    Every vertex is a vertex of scikit-learn's curve (``drop_intermediate=False``) and the
    curve is the same polyline: it keeps a vertex at every distinct genuine score and where
    each run of impostor-only scores ends, and drops only points inside such runs, which
    lie on a horizontal segment and change no metric. TAR@FAR and best accuracy are read
    exactly, not interpolated. Impostors are counted ``chunk_size`` at a time.
    """
    return tally_pairs(scores, labels, chunk_size).roc()


def tally_pairs(scores: np.ndarray, labels: np.ndarray, chunk_size: int = 1 << 20) -> ImpostorTally:
    """An :class:`ImpostorTally` of scored pairs (labels: 1 genuine, 0 impostor)."""
    scores = _as_scores(scores)
    labels = np.asarray(labels).ravel().astype(bool)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels differ in length: {scores.size} vs {labels.size}")
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"need both genuine and impostor pairs, got {positives} and {negatives}")
    tally = ImpostorTally(scores[labels])
    impostors = scores[~labels]
    for start in range(0, impostors.size, chunk_size):
        tally.add_impostors(impostors[start:start + chunk_size])
    return tally


def _as_scores(scores: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """Scores as a flat float array; float32 stays float32 (half the memory traffic)."""
    scores = np.asarray(scores)
    if dtype is None:
        dtype = scores.dtype if scores.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return scores.astype(dtype, copy=False).ravel()


def _refuse_nan(scores: np.ndarray, kind: str) -> None:
    """NaN has no place among the thresholds (and no bucket): refuse it rather than count it
    anywhere. ``min`` propagates NaN, in one pass without a temporary array."""
    if scores.size and np.isnan(scores.min()):
        raise ValueError(f"{int(np.isnan(scores).sum())} of {scores.size} {kind} scores are NaN: "
                         "a score must be a number")


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
    return tally_pairs(scores, labels).metrics()


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


def open_set_metrics(gallery_emb: np.ndarray, gallery_ids, mated_emb: np.ndarray, mated_ids,
                     nonmated_emb: np.ndarray, chunk_size: int = 4096) -> dict[str, float | None]:
    """Open-set identification (1:N search with a threshold), FRVT's figures at rank 1.

    Every probe is searched against the whole gallery and returns its best match. A
    non-mated probe (its person is not enrolled) is a false positive when that score reaches
    the threshold; a mated probe is a miss unless its best match is its own identity at or
    above the threshold. For each FPIR target the threshold is the lowest that keeps the
    false-positive share at or under it, and FNIR is the share of mated misses there (None
    when there are no non-mated probes to set it)."""
    gallery = _l2_normalise(gallery_emb)
    gallery_ids = np.asarray(gallery_ids)

    def best_matches(probe_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probes = _l2_normalise(probe_emb)
        scores, matches = np.empty(len(probes), np.float32), np.empty(len(probes), np.int64)
        for start in range(0, len(probes), chunk_size):
            similarity = probes[start:start + chunk_size] @ gallery.T
            matches[start:start + chunk_size] = similarity.argmax(1)
            scores[start:start + chunk_size] = similarity.max(1)
        return scores, matches

    mated_score, mated_match = best_matches(mated_emb)
    found = gallery_ids[mated_match] == np.asarray(mated_ids)
    nonmated_score = np.sort(best_matches(nonmated_emb)[0])[::-1]
    metrics: dict[str, float | None] = {}
    for key, target in FPIR_TARGETS.items():
        allowed = int(np.floor(target * len(nonmated_score)))  # false positives the target permits
        if not len(nonmated_score):
            metrics[key] = None
            continue
        threshold = (np.nextafter(nonmated_score[allowed], np.float32(np.inf)) if allowed < len(nonmated_score)
                     else -np.inf)
        metrics[key] = float(np.mean(~(found & (mated_score >= threshold))))
    return metrics


def _l2_normalise(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
