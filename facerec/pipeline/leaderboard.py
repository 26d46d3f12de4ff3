"""Stage leaderboard: every model's figures in one table (json, md, png, offline html) and
every model's ROC in one file for ``dvc plots``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facerec.config import LeaderboardParams
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, section
from facerec.reports.leaderboard import (
    COLUMNS,
    LOWER_IS_BETTER,
    build_leaderboard,
    combined_rocs,
    plot_leaderboard,
    skipped_models,
    to_markdown,
)
from facerec.reports.leaderboard_html import write_leaderboard_html
from facerec.runtime.io import atomic_path, write_json, write_table


def leaderboard(evaluate_dirs: list[Path], benchmark_dirs: list[Path], roc_dirs: list[Path], zoo_reports: list[Path],
                out_dir: Path, sort_by: str) -> list[dict]:
    """OUT/leaderboard.json, .md, .png and .html from the per-model metrics files of ours and
    the zoo (the markdown and the page list the skipped zoo entries and why), and every
    model's ROC in one table, OUT/roc_all_models.csv."""
    records = build_leaderboard(evaluate_dirs, benchmark_dirs, sort_by)
    skipped = skipped_models([r for r in zoo_reports if r.exists()])
    write_json(out_dir / "leaderboard.json", records)
    with atomic_path(out_dir / "leaderboard.md") as tmp:
        tmp.write_text(to_markdown(records, skipped))
    plot_leaderboard(records, sort_by, out_dir / "leaderboard.png")
    write_leaderboard_html(out_dir / "leaderboard.html", records, COLUMNS, LOWER_IS_BETTER, sort_by, skipped)
    write_table(out_dir / "roc_all_models.csv", combined_rocs(roc_dirs).round(8))
    return records


def _folders(*defaults: str) -> list[Path]:
    return [Path(folder) for folder in defaults]


def command(evaluations: Annotated[list[Path], typer.Option(help="folders of evaluate metrics files")] = _folders(
                "metrics/evaluate", "metrics/zoo/evaluate"),
            benchmarks: Annotated[list[Path], typer.Option(help="folders of benchmark metrics files")] = _folders(
                "metrics/benchmark", "metrics/zoo/benchmark"),
            rocs: Annotated[list[Path], typer.Option(help="folders of per-model ROC files")] = _folders(
                "metrics/roc", "metrics/zoo/roc"),
            zoo_reports: Annotated[list[Path], typer.Option(
                help="the zoo stages' reports (skipped entries)")] = _folders(
                "metrics/zoo/evaluate_report.json", "metrics/zoo/benchmark_report.json"),
            out: Annotated[Path, typer.Option(help="folder for the leaderboard files")] = Path("metrics"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Join the per-model metrics files of ours and the zoo into the leaderboard; print its markdown."""
    sort_by = section(params, "leaderboard", LeaderboardParams).sort_by
    leaderboard(evaluations, benchmarks, rocs, zoo_reports, out, sort_by)
    typer.echo((out / "leaderboard.md").read_text())
