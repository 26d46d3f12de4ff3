"""Verification metrics at scale, side by side with scikit-learn in one run.

1. ``pairs``: ROC-AUC, EER, accuracy and TAR@FAR of N scored pairs (float64, 10 %
   genuine) by ``facerec.evaluation.metrics.verification_metrics`` and by scikit-learn's
   ``roc_curve`` + ``roc_auc_score`` (TAR@FAR read off its curve), alternating, median
   of ``--repeats`` runs each; the figures of both must agree.
2. ``all_pairs``: every pair among F random faces (512-d, 10 per identity) scored and
   reduced to the same metrics by ``facerec.evaluation.protocols.all_pairs_tally``, with the peak
   memory numpy allocated (tracemalloc) next to the size of one F×F float64 matrix.

    python benchmarks/metrics_speed.py --out benchmarks/results/metrics_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from facerec.evaluation.metrics import FAR_TARGETS, verification_metrics
from facerec.evaluation.protocols import all_pairs_tally


def sklearn_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What a script would do with scikit-learn: its ROC, its AUC, TAR@FAR read off the ROC."""
    fpr, tpr, _ = roc_curve(labels, scores)
    result = {"roc_auc": roc_auc_score(labels, scores)}
    result.update({key: float(tpr[fpr <= far].max()) for key, far in FAR_TARGETS.items()})
    return result


def timed(function, *arguments) -> tuple[float, object]:
    started = time.perf_counter()
    value = function(*arguments)
    return time.perf_counter() - started, value


def pairs_benchmark(count: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    labels = rng.random(count) < 0.1
    scores = np.where(labels, rng.normal(0.55, 0.15, count), rng.normal(0.05, 0.12, count))
    ours_times, theirs_times = [], []
    for _ in range(repeats):
        seconds, ours = timed(verification_metrics, scores, labels)
        ours_times.append(seconds)
        seconds, theirs = timed(sklearn_metrics, scores, labels)
        theirs_times.append(seconds)
    disagreement = max(abs(ours[key] - theirs[key]) for key in theirs)
    if disagreement > 1e-9:
        raise AssertionError(f"facerec and scikit-learn disagree by {disagreement}: {ours} vs {theirs}")
    ours_seconds, theirs_seconds = float(np.median(ours_times)), float(np.median(theirs_times))
    return {"pairs": count, "facerec_seconds": ours_seconds, "sklearn_seconds": theirs_seconds,
            "speedup": theirs_seconds / ours_seconds, "max_difference": disagreement, "metrics": ours}


def all_pairs_benchmark(faces: int, per_identity: int) -> dict:
    rng = np.random.default_rng(1)
    identities = np.repeat(np.arange(faces // per_identity), per_identity)
    centres = rng.normal(size=(identities.max() + 1, 512))
    embeddings = centres[identities] + rng.normal(scale=3.0, size=(faces, 512))  # genuine cosine ~0.1: overlapping
    embeddings = (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32)
    tracemalloc.start()
    seconds, tally = timed(all_pairs_tally, embeddings, identities)
    metrics = tally.metrics()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"faces": faces, "genuine_pairs": tally.genuine, "impostor_pairs": tally.impostors,
            "seconds": seconds, "peak_numpy_mb": peak / 2**20, "square_float64_matrix_mb": faces**2 * 8 / 2**20,
            "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "pairs": pairs_benchmark(args.pairs, args.repeats),
              "all_pairs": all_pairs_benchmark(args.faces, per_identity=10)}
    pairs, every = report["pairs"], report["all_pairs"]
    print(f"{pairs['pairs']:,} pairs: facerec {pairs['facerec_seconds']:.3f} s, scikit-learn "
          f"{pairs['sklearn_seconds']:.3f} s ({pairs['speedup']:.2f}x)")
    print(f"{every['faces']:,} faces, {every['impostor_pairs']:,} impostor pairs: {every['seconds']:.2f} s, "
          f"peak {every['peak_numpy_mb']:.0f} MB (one {every['faces']}² float64 matrix: "
          f"{every['square_float64_matrix_mb']:.0f} MB)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
