"""The leaderboard: a pure function of the per-model metrics files.

``<evaluations>/<model>.json`` (accuracy figures) and ``<benchmarks>/<model>.json`` (cost
figures), from our model's folders and the zoo's, are joined by model name into one flat
record per model. The zoo's reports name the entries that were skipped and why.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from facerec.runtime.io import atomic_path  # noqa: E402

COLUMNS = [
    "model", "lfw_accuracy", "lfw_accuracy_std", "lfw_view1_accuracy", "roc_auc", "eer", "accuracy",
    "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4", "rank1", "rank5",
    "latency_ms", "throughput_fps", "size_mb", "gflops", "mparams",
]
LOWER_IS_BETTER = {"eer", "latency_ms", "size_mb", "gflops", "mparams"}


def _read_records(folders: Sequence[str | Path]) -> dict[str, dict]:
    records: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            if path.stem in records:
                raise ValueError(f"{path}: a second metrics file for model {path.stem!r}")
            records[path.stem] = json.loads(path.read_text())
    return records


def skipped_models(reports: Sequence[str | Path]) -> dict[str, str]:
    """Zoo entries that did not run, from the zoo's reports: name → reason."""
    skipped: dict[str, str] = {}
    for report in reports:
        skipped.update(json.loads(Path(report).read_text())["skipped"])
    return skipped


def build_leaderboard(evaluate_dirs: Sequence[str | Path], benchmark_dirs: Sequence[str | Path],
                      sort_by: str) -> list[dict]:
    """One record per model with every leaderboard column (None where a figure is missing),
    best first by ``sort_by``."""
    if sort_by not in COLUMNS[1:]:
        raise ValueError(f"leaderboard.sort_by: {sort_by!r} is not one of {COLUMNS[1:]}")
    evaluations = _read_records(evaluate_dirs)
    benchmarks = _read_records(benchmark_dirs)
    records = []
    for model in sorted(evaluations.keys() | benchmarks.keys()):
        merged = {**benchmarks.get(model, {}), **evaluations.get(model, {}), "model": model}
        records.append({column: merged.get(column) for column in COLUMNS})
    descending = sort_by not in LOWER_IS_BETTER

    def key(record: dict) -> tuple[bool, float]:
        value = record[sort_by]
        return (value is None, -value if (value is not None and descending) else (value or 0.0))

    return sorted(records, key=key)


def combined_rocs(folders: Sequence[str | Path]) -> pd.DataFrame:
    """Every model's ROC (``<folder>/<model>.csv``: fpr, tpr) in one long table with a
    ``model`` column, for one chart of all models (``dvc plots``)."""
    curves = [pd.read_csv(path).assign(model=path.stem)
              for folder in folders for path in sorted(Path(folder).glob("*.csv"))]
    if not curves:
        raise ValueError(f"no ROC curves (<model>.csv) in {[str(folder) for folder in folders]}")
    return pd.concat(curves, ignore_index=True)[["model", "fpr", "tpr"]]


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def to_markdown(records: list[dict], skipped: dict[str, str] | None = None) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(record[c]) for c in COLUMNS) + " |" for record in records]
    if skipped:
        lines += ["", "Not ranked (zoo entries that could not run here):", ""]
        lines += [f"- {name}: {reason}" for name, reason in sorted(skipped.items())]
    return "\n".join(lines) + "\n"


def plot_leaderboard(records: list[dict], metric: str, path: str | Path) -> None:
    """A horizontal bar chart of ``metric`` for every model that has it."""
    shown = [r for r in records if r[metric] is not None]
    figure, axis = plt.subplots(figsize=(7, 0.6 * max(len(shown), 1) + 1.2))
    bars = axis.barh([r["model"] for r in shown][::-1], [r[metric] for r in shown][::-1], color="#4c72b0")
    for bar, record in zip(bars, shown[::-1]):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {record[metric]:.4f}",
                  va="center")
    axis.set_xlabel(metric)
    axis.set_title(f"facerec leaderboard: {metric}")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)
