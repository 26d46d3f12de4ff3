"""Stage leaderboard: every model's figures on every evaluation set, a ranking per set (json,
md, png, Pareto png, offline html), and each set's ROCs in one file for ``dvc plots``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated

import typer

from facerec.config import LeaderboardParams
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, section
from facerec.reports.leaderboard import (
    build_leaderboard,
    current,
    our_origin,
    plot_leaderboard,
    plot_pareto,
    read_benchmarks,
    read_evaluations,
    read_rocs,
    skipped_evaluations,
    skipped_models,
    to_markdown,
)
from facerec.reports.leaderboard_html import write_leaderboard_html
from facerec.runtime.io import atomic_path, write_json, write_table


def leaderboard(evaluations: Path, benchmark_dirs: list[Path], rocs: Path, zoo_reports: list[Path], out_dir: Path,
                sort_by: str, expected: Mapping[str, Sequence[str]] | None = None,
                ours: str | None = None) -> list[dict]:
    """OUT/leaderboard.json, .md, .png, .html and OUT/pareto.png from the per-set, per-model
    metrics files of ours and the zoo (the markdown and the page list the skipped zoo entries
    and why), and each set's ROCs of every model in one table, OUT/leaderboard_roc/<set>.csv.
    With ``expected`` ({set: models}, the params file's), only those are ranked; ``ours`` (where
    our model comes from) heads the markdown."""
    evaluated, curves = read_evaluations(evaluations), read_rocs(rocs)
    if expected is not None:
        evaluated, curves = current(evaluated, curves, expected)
    records = build_leaderboard(evaluated, read_benchmarks(benchmark_dirs), sort_by)
    skipped = skipped_evaluations(evaluated)
    not_benchmarked = skipped_models([report for report in zoo_reports if report.exists()])
    write_json(out_dir / "leaderboard.json", records)
    with atomic_path(out_dir / "leaderboard.md") as tmp:
        tmp.write_text(to_markdown(records, sort_by, skipped, not_benchmarked, ours))
    plot_leaderboard(records, sort_by, out_dir / "leaderboard.png")
    plot_pareto(records, sort_by, out_dir / "pareto.png")
    write_leaderboard_html(out_dir / "leaderboard.html", records, sort_by, curves, skipped, not_benchmarked)
    for set_name, curve in curves.items():
        write_table(out_dir / "leaderboard_roc" / f"{set_name}.csv", curve)
    return records


def _folders(*defaults: str) -> list[Path]:
    return [Path(folder) for folder in defaults]


def command(evaluations: Annotated[Path, typer.Option(
                help="folder of evaluate metrics files, <set>/<model>.json")] = Path("metrics/evaluate"),
            benchmarks: Annotated[list[Path], typer.Option(
                help="folders of benchmark metrics files, <model>.json")] = _folders(
                "metrics/benchmark", "metrics/zoo/benchmark"),
            rocs: Annotated[Path, typer.Option(help="folder of ROC files, <set>/<model>.csv")] = Path("metrics/roc"),
            zoo_reports: Annotated[list[Path], typer.Option(
                help="the zoo stages' reports (skipped entries); missing ones are skipped")] = _folders(
                "metrics/zoo/benchmark_report.json"),
            out: Annotated[Path, typer.Option(help="folder for the leaderboard files")] = Path("metrics"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Rank every model on every evaluation set into the leaderboard; print its markdown.

    In a project (a params file), only its evaluation sets and models are ranked."""
    sort_by = section(params, "leaderboard", LeaderboardParams).sort_by
    expected = ours = None
    if params.exists():
        settings = load(params)
        models = [settings.train.model_name, *settings.zoo]
        expected = dict.fromkeys(settings.evaluate.sets, models)
        train = settings.train
        ours = our_origin(train.model_name, train.backbone, train.init_from, train.teacher, train.epochs,
                          train.adaptation)
    leaderboard(evaluations, benchmarks, rocs, zoo_reports, out, sort_by, expected, ours)
    typer.echo((out / "leaderboard.md").read_text())
