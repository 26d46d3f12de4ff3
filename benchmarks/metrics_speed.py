"""Verification metrics at scale, side by side with scikit-learn in one run.

1. ``pairs``: ROC-AUC, EER, accuracy and TAR@FAR of N scored pairs (float64, 10 %
   genuine; N = 1,000,000 and 2,000,000 by default) by
   ``facerec.evaluation.metrics.verification_metrics`` and by scikit-learn's ``roc_curve`` +
   ``roc_auc_score`` (TAR@FAR read off its curve), alternating, median of ``--repeats``
   runs each; the figures of both must agree.
2. ``all_pairs``: every pair among F random faces (512-d, 10 per identity) scored and
   reduced to the same metrics by ``facerec.evaluation.protocols.all_pairs_tally`` (median
   of ``--all-pairs-repeats``), with the peak memory numpy allocated (tracemalloc) next to
   the size of one F×F float64 matrix. Then the same pairs listed (their F(F-1)/2 float32
   scores and labels, as a script would hand them to scikit-learn) and reduced once by
   ``verification_metrics`` and once by scikit-learn: the ratio on the same scores, and
   all_pairs_tally's time (which includes scoring the pairs) against scikit-learn's
   (which does not).

Seconds are wall-clock (``perf_counter``); ``cpu_seconds`` (``process_time``, all threads)
are less sensitive to other work on a shared machine. ``load_average`` is the 1-minute
load before and after the run.

    python benchmarks/metrics_speed.py --out benchmarks/results/metrics_speed.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from facerec.evaluation.metrics import FAR_TARGETS, verification_metrics
from facerec.evaluation.protocols import all_pairs_tally


def sklearn_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """What a script would do with scikit-learn: its ROC, its AUC, TAR@FAR read off the ROC."""
    fpr, tpr, _ = roc_curve(labels, scores)
    result = {"roc_auc": float(roc_auc_score(labels, scores))}
    result.update({key: float(tpr[fpr <= far].max()) for key, far in FAR_TARGETS.items()})
    return result


def timed(function: Callable[..., Any], *arguments: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, value); garbage is collected first, outside the timing."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*arguments)
    return time.perf_counter() - wall, time.process_time() - cpu, value


def disagreement(ours: dict, theirs: dict) -> float:
    largest = max(abs(ours[key] - theirs[key]) for key in theirs)
    if largest > 1e-9:
        raise AssertionError(f"facerec and scikit-learn disagree by {largest}: {ours} vs {theirs}")
    return largest


def side_by_side(scores: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """Both on the same scores, alternating, median of ``repeats`` each."""
    runs: dict[str, list[tuple[float, float]]] = {"facerec": [], "sklearn": []}
    for _ in range(repeats):
        wall, cpu, ours = timed(verification_metrics, scores, labels)
        runs["facerec"].append((wall, cpu))
        wall, cpu, theirs = timed(sklearn_metrics, scores, labels)
        runs["sklearn"].append((wall, cpu))
    medians = {name: np.median(np.array(seconds), axis=0) for name, seconds in runs.items()}
    return {"facerec_seconds": float(medians["facerec"][0]), "sklearn_seconds": float(medians["sklearn"][0]),
            "speedup": float(medians["sklearn"][0] / medians["facerec"][0]),
            "facerec_cpu_seconds": float(medians["facerec"][1]), "sklearn_cpu_seconds": float(medians["sklearn"][1]),
            "cpu_speedup": float(medians["sklearn"][1] / medians["facerec"][1]),
            "max_difference": disagreement(ours, theirs), "metrics": ours}


def pairs_benchmark(count: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    labels = rng.random(count) < 0.1
    scores = np.where(labels, rng.normal(0.55, 0.15, count), rng.normal(0.05, 0.12, count))
    return {"pairs": count, **side_by_side(scores, labels, repeats)}


def random_faces(faces: int, per_identity: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    identities = np.repeat(np.arange(faces // per_identity), per_identity)
    centres = rng.normal(size=(identities.max() + 1, 512))
    embeddings = centres[identities] + rng.normal(scale=3.0, size=(faces, 512))  # genuine cosine ~0.1: overlapping
    return (embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)).astype(np.float32), identities


def listed_pairs(embeddings: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every unordered pair's float32 score and label, row by row (i < j)."""
    upper = np.triu(np.ones((len(embeddings), len(embeddings)), bool), k=1)
    scores = (embeddings @ embeddings.T)[upper]
    return scores, (identities[:, None] == identities[None, :])[upper]


def all_pairs_benchmark(faces: int, per_identity: int, repeats: int) -> dict:
    embeddings, identities = random_faces(faces, per_identity)

    def every_pair() -> tuple[dict, int, int]:
        tally = all_pairs_tally(embeddings, identities)
        return tally.metrics(), tally.genuine, tally.impostors

    seconds, cpu_seconds = np.median(np.array([timed(every_pair)[:2] for _ in range(repeats)]), axis=0)
    tracemalloc.start()
    metrics, genuine, impostors = every_pair()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    scores, labels = listed_pairs(embeddings, identities)
    listed = side_by_side(scores, labels, repeats=1)
    # The listed scores come from one F×F product, the tally's from row slabs: the same
    # figures up to a float32 rounding of a few scores.
    drift = max(abs(metrics[key] - listed["metrics"][key]) for key in metrics)
    if (genuine, impostors) != (labels.sum(), (~labels).sum()):
        raise AssertionError(f"all_pairs_tally counted {genuine} + {impostors} pairs, the list has "
                             f"{labels.sum()} + {(~labels).sum()}")
    return {"faces": faces, "genuine_pairs": genuine, "impostor_pairs": impostors,
            "seconds": float(seconds), "cpu_seconds": float(cpu_seconds),
            "speedup_over_sklearn_on_listed_scores": listed["sklearn_seconds"] / float(seconds),
            "peak_numpy_mb": peak / 2**20, "square_float64_matrix_mb": faces**2 * 8 / 2**20,
            "metrics": metrics, "max_difference_from_listed": drift, "listed_scores": listed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--faces", type=int, default=10_000)
    parser.add_argument("--all-pairs-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                              "threads": torch.get_num_threads(), "numpy": np.__version__,
                              "load_average_before": os.getloadavg()[0]}
    report["pairs"] = [pairs_benchmark(count, args.repeats) for count in args.pairs]
    report["all_pairs"] = all_pairs_benchmark(args.faces, 10, args.all_pairs_repeats)
    report["load_average_after"] = os.getloadavg()[0]
    for pairs in report["pairs"]:
        print(f"{pairs['pairs']:,} pairs: facerec {pairs['facerec_seconds']:.3f} s, scikit-learn "
              f"{pairs['sklearn_seconds']:.3f} s ({pairs['speedup']:.1f}x; CPU {pairs['cpu_speedup']:.1f}x)")
    every, listed = report["all_pairs"], report["all_pairs"]["listed_scores"]
    print(f"{every['faces']:,} faces, {every['impostor_pairs']:,} impostor pairs: {every['seconds']:.2f} s "
          f"(CPU {every['cpu_seconds']:.2f} s), peak {every['peak_numpy_mb']:.0f} MB (one {every['faces']}² "
          f"float64 matrix: {every['square_float64_matrix_mb']:.0f} MB); the same pairs listed: facerec "
          f"{listed['facerec_seconds']:.2f} s, scikit-learn {listed['sklearn_seconds']:.1f} s "
          f"({listed['speedup']:.1f}x)")
    print(f"load average {report['load_average_before']:.1f} before, {report['load_average_after']:.1f} after")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
