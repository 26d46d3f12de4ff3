"""The leaderboard: a pure function of the per-model metrics files.

``metrics/evaluate/<model>.json`` (accuracy figures) and ``metrics/benchmark/<model>.json``
(cost figures) are joined by model name into one flat record per model.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from facerec.io import atomic_path  # noqa: E402

COLUMNS = [
    "model", "lfw_accuracy", "lfw_accuracy_std", "roc_auc", "eer", "accuracy",
    "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4", "rank1", "rank5",
    "latency_ms", "throughput_fps", "size_mb", "gflops", "mparams",
]
LOWER_IS_BETTER = {"eer", "latency_ms", "size_mb", "gflops", "mparams"}


def _read_records(folder: Path) -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def build_leaderboard(evaluate_dir: str | Path, benchmark_dir: str | Path, sort_by: str) -> list[dict]:
    """One record per model with every leaderboard column (None where a figure is missing),
    best first by ``sort_by``."""
    if sort_by not in COLUMNS[1:]:
        raise ValueError(f"leaderboard.sort_by: {sort_by!r} is not one of {COLUMNS[1:]}")
    evaluations = _read_records(Path(evaluate_dir))
    benchmarks = _read_records(Path(benchmark_dir))
    records = []
    for model in sorted(evaluations.keys() | benchmarks.keys()):
        merged = {**benchmarks.get(model, {}), **evaluations.get(model, {}), "model": model}
        records.append({column: merged.get(column) for column in COLUMNS})
    descending = sort_by not in LOWER_IS_BETTER

    def key(record: dict) -> tuple[bool, float]:
        value = record[sort_by]
        return (value is None, -value if (value is not None and descending) else (value or 0.0))

    return sorted(records, key=key)


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def to_markdown(records: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(record[c]) for c in COLUMNS) + " |" for record in records]
    return "\n".join(lines) + "\n"


def plot_leaderboard(records: list[dict], metric: str, path: str | Path) -> None:
    """A horizontal bar chart of ``metric`` for every model that has it."""
    shown = [r for r in records if r[metric] is not None]
    figure, axis = plt.subplots(figsize=(7, 0.6 * max(len(shown), 1) + 1.2))
    axis.barh([r["model"] for r in shown][::-1], [r[metric] for r in shown][::-1], color="#4c72b0")
    for bar, record in zip(axis.patches, shown[::-1]):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {record[metric]:.4f}",
                  va="center")
    axis.set_xlabel(metric)
    axis.set_title(f"facerec leaderboard: {metric}")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
