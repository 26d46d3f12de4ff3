"""The leaderboard: a pure function of the per-model metrics files, one ranking per evaluation set.

Every model is scored on several evaluation sets (LFW, the user's identity folders, insightface
``.bin`` sets): ``<evaluations>/<set>/<model>.json`` holds one model's figures on one set (its
``kind`` always; ``skipped`` with the reason instead of figures when a zoo model could not run).
A model's cost figures, ``<benchmarks>/<model>.json`` from our folders and the zoo's, hold on
every set. They are joined by model name into one flat record per (set, model); the zoo's
benchmark report names the entries that could not be measured and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogFormatter  # noqa: E402

from facerec.runtime.io import atomic_path  # noqa: E402

KINDS = ("lfw", "identities", "bin")
FIGURES = [
    "lfw_accuracy", "lfw_accuracy_std", "lfw_view1_accuracy", "bin_accuracy", "bin_accuracy_std", "pairs_accuracy",
    "pairs_accuracy_std", "roc_auc", "eer",
    "accuracy", "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4", "rank1", "rank5",
    "fnir_at_fpir_1e-2", "fnir_at_fpir_1e-1",
]
COSTS = ["latency_ms", "throughput_fps", "size_mb", "gflops", "mparams"]
METRICS = FIGURES + COSTS
COLUMNS = ["model", *METRICS]
LOWER_IS_BETTER = {"eer", "fnir_at_fpir_1e-2", "fnir_at_fpir_1e-1", "latency_ms", "size_mb", "gflops", "mparams"}
# The ranking of a set that has no ``sort_by`` figure (an identities set has no LFW accuracy).
FALLBACK_SORT = ("tar_at_far_1e-3", "rank1", "roc_auc")
PARETO_COSTS = ("latency_ms", "throughput_fps")


def _read_evaluation(path: Path) -> dict:
    figures = json.loads(path.read_text())
    if figures.get("kind") not in KINDS:
        raise ValueError(f"{path}: \"kind\" is {figures.get('kind')!r}, not one of {list(KINDS)}")
    return figures


def read_evaluations(folder: str | Path) -> dict[str, dict[str, dict]]:
    """``<folder>/<set>/<model>.json`` as {set: {model: figures}}, sets and models in name order."""
    evaluations = {}
    for set_dir in sorted(path for path in Path(folder).iterdir() if path.is_dir()):
        models = {path.stem: _read_evaluation(path) for path in sorted(set_dir.glob("*.json"))}
        kinds = {figures["kind"] for figures in models.values()}
        if len(kinds) > 1:
            raise ValueError(f"{set_dir}: the models disagree on the set's kind {sorted(kinds)}; rerun its evaluation")
        if models:
            evaluations[set_dir.name] = models
    if not evaluations:
        raise ValueError(f"{folder}: no evaluation files (<set>/<model>.json); run the evaluate stages first")
    return evaluations


def read_benchmarks(folders: Sequence[str | Path]) -> dict[str, dict]:
    """``<folder>/<model>.json`` of every folder as {model: cost figures}."""
    benchmarks: dict[str, dict] = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("*.json")):
            if path.stem in benchmarks:
                raise ValueError(f"{path}: a second benchmark file for model {path.stem!r}")
            benchmarks[path.stem] = json.loads(path.read_text())
    return benchmarks


def skipped_models(reports: Sequence[str | Path]) -> dict[str, str]:
    """Zoo entries that did not run, from the zoo's reports: name → reason."""
    skipped: dict[str, str] = {}
    for report in reports:
        skipped.update(json.loads(Path(report).read_text())["skipped"])
    return skipped


def current(evaluations: Mapping[str, Mapping[str, dict]], rocs: Mapping[str, pd.DataFrame],
            expected: Mapping[str, Sequence[str]]) -> tuple[dict[str, dict[str, dict]], dict[str, pd.DataFrame]]:
    """The evaluations and ROCs of the ``expected`` sets and models only: the files of a set or
    model removed from params.yaml stay on disk after its stages go, and must not be ranked.
    An expected file that is missing is an error naming it."""
    missing = [f"{set_name}/{model}.json" for set_name, models in expected.items() for model in models
               if model not in evaluations.get(set_name, {})]
    if missing:
        raise ValueError(f"no evaluation for {', '.join(missing)}: run dvc repro")
    kept = {set_name: {model: evaluations[set_name][model] for model in models}
            for set_name, models in expected.items()}
    curves = {set_name: rocs[set_name][rocs[set_name]["model"].isin(models)].reset_index(drop=True)
              for set_name, models in expected.items() if set_name in rocs}
    return kept, curves


def skipped_evaluations(evaluations: Mapping[str, Mapping[str, dict]]) -> list[dict]:
    """The zoo models that could not run on a set: ``{"set", "kind", "model", "reason"}`` each."""
    return [{"set": set_name, "kind": figures["kind"], "model": model, "reason": figures["skipped"]}
            for set_name, models in sorted(evaluations.items())
            for model, figures in sorted(models.items()) if "skipped" in figures]


def sort_metric(records: Sequence[dict], sort_by: str) -> str:
    """The metric that ranks ``records`` (one set's): ``sort_by`` when any of them has it, else
    the first of FALLBACK_SORT that one has (``sort_by`` when none has any)."""
    for metric in (sort_by, *FALLBACK_SORT):
        if any(record[metric] is not None for record in records):
            return metric
    return sort_by


def _best_first(records: Sequence[dict], metric: str) -> list[dict]:
    """``records`` by ``metric``, best first (LOWER_IS_BETTER decides which end), None last;
    ties keep their order."""
    descending = metric not in LOWER_IS_BETTER

    def key(record: dict) -> tuple[bool, float]:
        value = record[metric]
        return (value is None, -value if (value is not None and descending) else (value or 0.0))

    return sorted(records, key=key)


def _record(set_name: str, model: str, figures: dict, costs: dict) -> dict:
    merged = {**costs, **figures}
    return {"set": set_name, "kind": figures["kind"], "model": model,
            **{metric: merged.get(metric) for metric in METRICS}}


def build_leaderboard(evaluations: Mapping[str, Mapping[str, dict]], benchmarks: Mapping[str, dict],
                      sort_by: str) -> list[dict]:
    """One record per (set, model) that ran, with every metric (None where a figure is missing):
    sets in name order, models best first by the set's :func:`sort_metric`."""
    if sort_by not in METRICS:
        raise ValueError(f"leaderboard.sort_by: {sort_by!r} is not one of {METRICS}")
    records = []
    for set_name, models in sorted(evaluations.items()):
        ran = [_record(set_name, model, figures, benchmarks.get(model, {}))
               for model, figures in sorted(models.items()) if "skipped" not in figures]
        records += _best_first(ran, sort_metric(ran, sort_by))
    return records


def by_set(records: Sequence[dict]) -> dict[str, list[dict]]:
    """``records`` grouped by set, in their order."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["set"], []).append(record)
    return groups


def _goodness(record: dict, column: str) -> float:
    """The figure with its better end up."""
    return -record[column] if column in LOWER_IS_BETTER else record[column]


def pareto_front(records: Sequence[dict], metric: str, against: str = "latency_ms") -> list[str]:
    """The models (of one set) that no other beats on both ``metric`` and ``against``: no
    worse on either and better on one, each axis's better end by LOWER_IS_BETTER. Models that
    lack either figure are left out; equal ones are all kept. Names in ascending ``against``."""
    shown = [record for record in records if record[metric] is not None and record[against] is not None]
    points = [(_goodness(record, against), _goodness(record, metric)) for record in shown]

    def dominated(point: tuple[float, float]) -> bool:
        return any(other[0] >= point[0] and other[1] >= point[1] and other != point for other in points)

    front = [record for record, point in zip(shown, points) if not dominated(point)]
    return [record["model"] for record in sorted(front, key=lambda record: record[against])]


def read_rocs(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Every model's ROC on each set (``<folder>/<set>/<model>.csv``: fpr, tpr) as {set: one
    long table with a ``model`` column, rounded to 8 decimals}, for one chart of all models of a
    set (``dvc plots``)."""
    rocs = {}
    for set_dir in sorted(path for path in Path(folder).iterdir() if path.is_dir()):
        curves = [pd.read_csv(path).assign(model=path.stem) for path in sorted(set_dir.glob("*.csv"))]
        if curves:
            rocs[set_dir.name] = pd.concat(curves, ignore_index=True)[["model", "fpr", "tpr"]].round(8)
    if not rocs:
        raise ValueError(f"{folder}: no ROC curves (<set>/<model>.csv); run the evaluate stages first")
    return rocs


def _cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _direction(metric: str) -> str:
    return "lower is better" if metric in LOWER_IS_BETTER else "higher is better"


def _table(records: Sequence[dict]) -> list[str]:
    """A markdown table of the columns that have a figure for at least one of ``records``."""
    columns = ["model", *(c for c in METRICS if any(record[c] is not None for record in records))]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(_cell(record[c]) for c in columns) + " |" for record in records]


def _set_section(set_name: str, kind: str, records: Sequence[dict], skipped: Sequence[dict], sort_by: str) -> list[str]:
    lines = [f"## {set_name} ({kind})", ""]
    if records:
        metric = sort_metric(records, sort_by)
        missing = "" if metric == sort_by else f" (no model here has {sort_by})"
        lines += [f"Ranked by {metric}, {_direction(metric)}{missing}.", "", *_table(records), ""]
    if skipped:
        lines += [f"Not ranked on {set_name} (zoo entries that could not run on it):", ""]
        lines += [f"- {entry['model']}: {entry['reason']}" for entry in skipped] + [""]
    return lines


def to_markdown(records: Sequence[dict], sort_by: str, skipped: Sequence[dict] = (),
                not_benchmarked: Mapping[str, str] | None = None, ours: str | None = None) -> str:
    """A section per set (``records`` and ``skipped`` as :func:`build_leaderboard` and
    :func:`skipped_evaluations` return them), then the zoo entries the benchmark skipped;
    ``ours`` (a sentence on where our model comes from) opens the page."""
    kinds = {entry["set"]: entry["kind"] for entry in [*skipped, *records]}
    ranked, not_ranked = by_set(records), by_set(skipped)
    lines = [ours, ""] if ours else []
    for set_name in sorted(kinds):
        lines += _set_section(set_name, kinds[set_name], ranked.get(set_name, []), not_ranked.get(set_name, []),
                              sort_by)
    if not_benchmarked:
        lines += ["## Not benchmarked", "", "Zoo entries whose cost could not be measured here:", ""]
        lines += [f"- {name}: {reason}" for name, reason in sorted(not_benchmarked.items())] + [""]
    return "\n".join(lines)


def our_origin(model_name: str, backbone: str, init_from: str | None, teacher: str | None, epochs: int,
               adaptation: str) -> str:
    """One sentence on what our model is made from, so that it reads beside the zoo models it
    started from or learnt from."""
    parts = [f"a {backbone}"]
    if init_from is not None:
        parts.append(f"started from **{init_from}**" + (" (its weights kept: 0 epochs)" if epochs == 0 else
                                                        f", fine-tuned {epochs} epochs"))
    else:
        parts.append(f"trained from scratch, {epochs} epochs")
    if teacher is not None:
        parts.append(f"taught by **{teacher}**")
    if adaptation != "none":
        parts.append(f"with a {adaptation} map fitted on the training people")
    return f"Ours: **{model_name}**, " + ", ".join(parts) + "."


def _save(figure: plt.Figure, path: str | Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def _bar_panel(axis: plt.Axes, set_name: str, records: Sequence[dict], metric: str) -> None:
    shown = [record for record in records if record[metric] is not None][::-1]  # best on top
    bars = axis.barh([record["model"] for record in shown], [record[metric] for record in shown], color="#4c72b0")
    for bar, record in zip(bars, shown):
        axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {record[metric]:.4f}", va="center")
    axis.set_xlabel(metric)
    axis.set_title(f"{set_name} ({records[0]['kind']}): {metric}, {_direction(metric)}")


def plot_leaderboard(records: Sequence[dict], sort_by: str, path: str | Path) -> None:
    """A horizontal bar panel per set of the set's sort metric, for every model that has it."""
    groups = by_set(records)
    heights = [len(group) for group in groups.values()] or [1]
    figure, axes = plt.subplots(len(heights), 1, figsize=(8, 0.5 * sum(heights) + 1.6 * len(heights)),
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, (set_name, group) in zip(axes[:, 0], groups.items()):
        _bar_panel(axis, set_name, group, sort_metric(group, sort_by))
    _save(figure, path)


def _pareto_panel(axis: plt.Axes, set_name: str, records: Sequence[dict], metric: str, against: str) -> None:
    shown = [record for record in records if record[metric] is not None and record[against] is not None]
    axis.scatter([r[against] for r in shown], [r[metric] for r in shown], color="#9aa5b8", zorder=2)
    for record in shown:
        axis.annotate(record["model"], (record[against], record[metric]), textcoords="offset points",
                      xytext=(4, 4), fontsize=8)
    named = {record["model"]: record for record in shown}
    front = [named[model] for model in pareto_front(shown, metric, against)]
    # The best figure attainable at each cost: it steps at each front model, after it when
    # a lower cost is better (latency), before it when a higher one is (throughput).
    axis.step([r[against] for r in front], [r[metric] for r in front], color="#dd8452",
              where="post" if against in LOWER_IS_BETTER else "pre", marker="o", zorder=3, label="Pareto front")
    axis.set_xscale("log")
    axis.margins(x=0.2, y=0.1)  # room for the labels of the outermost models
    # Plain numbers: the default 3×10¹-style labels of a log axis overlap over one decade.
    axis.xaxis.set_major_formatter(LogFormatter())
    axis.xaxis.set_minor_formatter(LogFormatter())
    axis.set_xlabel(f"{against} (log), {_direction(against)}")
    axis.set_ylabel(f"{metric}, {_direction(metric)}")
    axis.set_title(f"{set_name} ({records[0]['kind']})")
    axis.legend(loc="best", fontsize=8)


def plot_pareto(records: Sequence[dict], sort_by: str, path: str | Path) -> None:
    """Per set (a column each), its accuracy figure against latency (top row) and throughput
    (bottom row), every model a labelled point and the :func:`pareto_front` marked."""
    groups = by_set(records)
    figure, axes = plt.subplots(len(PARETO_COSTS), max(len(groups), 1), figsize=(5.5 * max(len(groups), 1), 9),
                                squeeze=False)
    for column, (set_name, group) in enumerate(groups.items()):
        # A cost ranked against a cost says nothing: then the set's accuracy fallback.
        metric = sort_metric(group, sort_by if sort_by in FIGURES else FALLBACK_SORT[0])
        for row, against in enumerate(PARETO_COSTS):
            _pareto_panel(axes[row, column], set_name, group, metric, against)
    _save(figure, path)
