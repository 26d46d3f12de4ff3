"""The leaderboard per evaluation set, from metrics files of the shape the evaluate and
benchmark stages write: ranking within each set, the per-set fallback of the sort metric,
the markdown's per-set columns and skipped entries, the Pareto front, and the stage's files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from facerec.pipeline import leaderboard as stage
from facerec.reports.leaderboard import (
    METRICS,
    build_leaderboard,
    current,
    pareto_front,
    read_benchmarks,
    read_evaluations,
    read_rocs,
    skipped_evaluations,
    skipped_models,
    to_markdown,
)

OURS, ARCFACE, FACENET, DLIB, TOPOFR = (
    "facerec_mobilefacenet", "arcface_r100", "facenet_20180408", "dlib_resnet_v1", "topofr_r100")
NOT_FOUND = "checkpoint file not found"
EVALUATIONS = {
    "lfw": {
        OURS: {"lfw_accuracy": 0.95, "lfw_accuracy_std": 0.01, "roc_auc": 0.98, "eer": 0.05, "tar_at_far_1e-3": 0.70,
               "pairs": 6000},
        ARCFACE: {"lfw_accuracy": 0.995, "roc_auc": 0.999, "eer": 0.006, "tar_at_far_1e-3": 0.98, "pairs": 6000},
        FACENET: {"lfw_accuracy": 0.99, "roc_auc": 0.997, "eer": 0.012, "tar_at_far_1e-3": 0.95, "pairs": 6000},
        DLIB: {"lfw_accuracy": 0.96, "roc_auc": 0.99, "eer": 0.03, "tar_at_far_1e-3": 0.80, "pairs": 6000},
        TOPOFR: {"skipped": NOT_FOUND},
    },
    # The user's own identities: no LFW accuracy, so the ranking falls back to TAR at FAR 1e-3.
    "mine": {
        OURS: {"rank1": 0.90, "rank5": 0.97, "tar_at_far_1e-3": 0.60, "fnir_at_fpir_1e-2": 0.30, "identities": 12},
        ARCFACE: {"rank1": 0.99, "rank5": 1.0, "tar_at_far_1e-3": 0.90, "fnir_at_fpir_1e-2": 0.05, "identities": 12},
        DLIB: {"rank1": 0.95, "rank5": 0.99, "fnir_at_fpir_1e-2": 0.20, "identities": 12},
        FACENET: {"skipped": "needs 160x160 crops"},
        TOPOFR: {"skipped": NOT_FOUND},
    },
    # A .bin set: neither TAR nor rank-1, so roc_auc ranks (it disagrees with bin_accuracy here).
    "vgg2_fp": {
        OURS: {"bin_accuracy": 0.96, "bin_accuracy_std": 0.01, "roc_auc": 0.93},
        ARCFACE: {"bin_accuracy": 0.95, "bin_accuracy_std": 0.02, "roc_auc": 0.99},
    },
}
KINDS = {"lfw": "lfw", "mine": "identities", "vgg2_fp": "bin"}
BENCHMARKS = {
    "benchmark": {OURS: {"latency_ms": 4.0, "throughput_fps": 250.0, "size_mb": 4.0, "gflops": 0.45, "mparams": 1.0}},
    "zoo/benchmark": {
        ARCFACE: {"latency_ms": 40.0, "throughput_fps": 25.0, "size_mb": 250.0, "gflops": 24.2, "mparams": 65.2},
        FACENET: {"latency_ms": 6.0, "throughput_fps": 160.0, "size_mb": 90.0, "gflops": 1.4, "mparams": None},
        DLIB: {"latency_ms": 8.0, "throughput_fps": 120.0, "size_mb": 22.0},
    },
}
NOT_BENCHMARKED = {TOPOFR: NOT_FOUND}
FPR = [0.0, 1e-4, 0.0123456789123, 1.0]


def write_metrics(root: Path) -> Path:
    """The metrics files of EVALUATIONS and BENCHMARKS under ``root/metrics`` (evaluate,
    roc, benchmark, zoo/benchmark, zoo/benchmark_report.json), as the stages write them."""
    metrics = root / "metrics"
    for set_name, models in EVALUATIONS.items():
        for model, figures in models.items():
            path = metrics / "evaluate" / set_name / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"kind": KINDS[set_name], **figures}))
            if "skipped" not in figures:
                roc = metrics / "roc" / set_name / f"{model}.csv"
                roc.parent.mkdir(parents=True, exist_ok=True)
                tpr = figures.get("tar_at_far_1e-3", 0.5)
                pd.DataFrame({"fpr": FPR, "tpr": [0.0, tpr, (1 + tpr) / 2, 1.0]}).to_csv(roc, index=False)
    for folder, models in BENCHMARKS.items():
        for model, figures in models.items():
            path = metrics / folder / f"{model}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(figures))
    (metrics / "zoo" / "benchmark_report.json").write_text(
        json.dumps({"ran": [ARCFACE, FACENET, DLIB], "skipped": NOT_BENCHMARKED}))
    return metrics


@pytest.fixture
def metrics(tmp_path: Path) -> Path:
    return write_metrics(tmp_path)


def _board(metrics: Path, sort_by: str = "lfw_accuracy") -> list[dict]:
    benchmarks = read_benchmarks([metrics / "benchmark", metrics / "zoo" / "benchmark"])
    return build_leaderboard(read_evaluations(metrics / "evaluate"), benchmarks, sort_by)


def _ranking(records: list[dict]) -> list[tuple[str, str]]:
    return [(record["set"], record["model"]) for record in records]


def test_records_are_flat_per_set_and_model_sets_in_name_order_and_best_first_within_each(metrics):
    records = _board(metrics)
    assert _ranking(records) == [
        ("lfw", ARCFACE), ("lfw", FACENET), ("lfw", DLIB), ("lfw", OURS),  # lfw_accuracy
        ("mine", ARCFACE), ("mine", OURS), ("mine", DLIB),  # tar_at_far_1e-3; dlib lacks it: last
        ("vgg2_fp", ARCFACE), ("vgg2_fp", OURS),  # roc_auc, not bin_accuracy
    ]
    assert all(list(record) == ["set", "kind", "model", *METRICS] for record in records)
    ours_on_mine = records[5]
    assert ours_on_mine["kind"] == "identities" and ours_on_mine["rank1"] == 0.90
    assert ours_on_mine["lfw_accuracy"] is None and "identities" not in ours_on_mine  # counts are not columns
    # A model's benchmark holds on every set it ran on.
    assert {r["latency_ms"] for r in records if r["model"] == ARCFACE} == {40.0}
    assert TOPOFR not in {record["model"] for record in records}


def test_a_lower_is_better_sort_metric_ranks_smallest_first_and_sets_without_it_fall_back(metrics):
    records = _board(metrics, sort_by="eer")
    assert _ranking(records) == [
        ("lfw", ARCFACE), ("lfw", FACENET), ("lfw", DLIB), ("lfw", OURS),
        ("mine", ARCFACE), ("mine", OURS), ("mine", DLIB), ("vgg2_fp", ARCFACE), ("vgg2_fp", OURS),
    ]
    by_latency = _ranking(_board(metrics, sort_by="latency_ms"))
    assert by_latency[:4] == [("lfw", OURS), ("lfw", FACENET), ("lfw", DLIB), ("lfw", ARCFACE)]
    assert by_latency[4:7] == [("mine", OURS), ("mine", DLIB), ("mine", ARCFACE)]


def test_sort_by_that_is_no_column_is_an_error_naming_the_allowed_ones(metrics):
    with pytest.raises(ValueError, match=r"leaderboard\.sort_by: 'lfw_acc' is not one of .*'tar_at_far_1e-3'"):
        _board(metrics, sort_by="lfw_acc")


def test_an_evaluation_file_without_a_kind_is_an_error_naming_it(metrics):
    (metrics / "evaluate" / "mine" / f"{OURS}.json").write_text(json.dumps({"rank1": 0.9}))
    with pytest.raises(ValueError, match=rf"mine/{OURS}\.json: \"kind\" is None"):
        read_evaluations(metrics / "evaluate")


def _section(markdown: str, heading: str) -> str:
    return next(part for part in markdown.split("\n## ") if part.lstrip("# ").startswith(heading))


def _header(section: str) -> list[str]:
    line = next(line for line in section.splitlines() if line.startswith("| model"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_markdown_has_a_section_per_set_with_only_its_columns_and_what_was_skipped(metrics):
    evaluations = read_evaluations(metrics / "evaluate")
    records = _board(metrics)
    markdown = to_markdown(records, "lfw_accuracy", skipped_evaluations(evaluations),
                           skipped_models([metrics / "zoo" / "benchmark_report.json"]))

    assert [line for line in markdown.splitlines() if line.startswith("## ")] == [
        "## lfw (lfw)", "## mine (identities)", "## vgg2_fp (bin)", "## Not benchmarked"]
    lfw, mine, vgg2_fp = (_section(markdown, name) for name in ("lfw (", "mine (", "vgg2_fp ("))
    assert "Ranked by lfw_accuracy, higher is better." in lfw
    assert "Ranked by tar_at_far_1e-3, higher is better (no model here has lfw_accuracy)." in mine
    assert "Ranked by roc_auc" in vgg2_fp
    assert _header(lfw) == ["model", "lfw_accuracy", "lfw_accuracy_std", "roc_auc", "eer", "tar_at_far_1e-3",
                            "latency_ms", "throughput_fps", "size_mb", "gflops", "mparams"]
    assert _header(mine) == ["model", "tar_at_far_1e-3", "rank1", "rank5", "fnir_at_fpir_1e-2",
                             "latency_ms", "throughput_fps", "size_mb", "gflops", "mparams"]
    assert _header(vgg2_fp)[:4] == ["model", "bin_accuracy", "bin_accuracy_std", "roc_auc"]
    table_rows = [line for line in mine.splitlines() if line.startswith(f"| {DLIB} ")]
    assert table_rows == [f"| {DLIB} | — | 0.9500 | 0.9900 | 0.2000 | 8.0000 | 120.0 | 22.0 | — | — |"]

    assert f"- {TOPOFR}: {NOT_FOUND}" in lfw and f"- {TOPOFR}: {NOT_FOUND}" in mine
    assert f"- {FACENET}: needs 160x160 crops" in mine and FACENET not in lfw.split("Not ranked")[-1]
    assert "Not ranked" not in vgg2_fp
    assert f"- {TOPOFR}: {NOT_FOUND}" in _section(markdown, "Not benchmarked")


def _point(model: str, latency: float | None, accuracy: float | None, throughput: float | None = None) -> dict:
    return {"model": model, "latency_ms": latency, "tar_at_far_1e-3": accuracy, "eer": accuracy,
            "throughput_fps": throughput}


def test_the_pareto_front_keeps_the_models_no_other_beats_on_both_axes():
    records = [
        _point("fastest", 2.0, 0.80),
        _point("fast", 5.0, 0.90),
        _point("slower_but_no_better", 5.0, 0.85),  # as fast as "fast", less accurate: dominated
        _point("best", 20.0, 0.95),
        _point("best_twin", 20.0, 0.95),  # ties "best" on both: neither beats the other
        _point("slow_and_worse", 30.0, 0.93),  # dominated by "best"
        _point("same_accuracy_slower", 25.0, 0.95),  # dominated by "best" on latency alone
        _point("not_benchmarked", None, 0.99),  # no latency: not on the chart, not on the front
    ]
    assert pareto_front(records, "tar_at_far_1e-3") == ["fastest", "fast", "best", "best_twin"]
    # A lower-is-better metric flips which end is good: the least accurate figure is now the best eer.
    assert pareto_front(records, "eer") == ["fastest"]


def test_the_pareto_front_against_throughput_prefers_the_higher():
    records = [_point("a", None, 0.80, throughput=500.0), _point("b", None, 0.90, throughput=100.0),
               _point("c", None, 0.85, throughput=90.0), _point("d", None, None, throughput=900.0)]
    assert pareto_front(records, "tar_at_far_1e-3", against="throughput_fps") == ["b", "a"]


def _stage_app() -> typer.Typer:
    app = typer.Typer()
    app.command()(stage.command)
    return app


def test_the_stage_writes_every_file_and_each_sets_rocs_in_one_table(metrics, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no params.yaml here: the leaderboard section's defaults
    result = CliRunner().invoke(_stage_app(), [
        "--evaluations", "metrics/evaluate", "--benchmarks", "metrics/benchmark", "--benchmarks",
        "metrics/zoo/benchmark", "--rocs", "metrics/roc", "--zoo-reports", "metrics/zoo/benchmark_report.json",
        "--zoo-reports", "metrics/zoo/no_such_report.json", "--out", "board"])
    assert result.exit_code == 0, result.output
    board = tmp_path / "board"
    assert result.output.strip() == (board / "leaderboard.md").read_text().strip()
    assert json.loads((board / "leaderboard.json").read_text()) == _board(metrics)

    assert sorted(path.name for path in (board / "leaderboard_roc").iterdir()) == ["lfw.csv", "mine.csv", "vgg2_fp.csv"]
    mine = pd.read_csv(board / "leaderboard_roc" / "mine.csv")
    assert list(mine.columns) == ["model", "fpr", "tpr"]
    assert sorted(mine["model"].unique()) == sorted([ARCFACE, DLIB, OURS])  # skipped models have no curve
    ours = mine[mine["model"] == OURS]
    assert ours["fpr"].tolist() == [0.0, 1e-4, 0.01234568, 1.0]  # rounded to 8 decimals
    assert ours["tpr"].tolist() == [0.0, 0.6, 0.8, 1.0]

    for picture in ("leaderboard.png", "pareto.png"):
        with Image.open(board / picture) as image:
            assert image.format == "PNG" and image.width >= 800, (picture, image.size)
    assert (board / "leaderboard.html").stat().st_size > 1_000_000  # plotly's bundle is inlined


def test_only_the_params_sets_and_models_are_ranked_and_a_missing_one_is_named(metrics):
    """A set or model removed from params.yaml leaves its files behind: they are not ranked."""
    evaluations, rocs = read_evaluations(metrics / "evaluate"), read_rocs(metrics / "roc")
    set_name, models = next(iter(EVALUATIONS.items()))
    kept = [model for model in models if "skipped" not in models[model]][:1]
    evaluations_now, rocs_now = current(evaluations, rocs, {set_name: kept})
    assert evaluations_now == {set_name: {kept[0]: evaluations[set_name][kept[0]]}}
    assert set(rocs_now) == {set_name} and set(rocs_now[set_name]["model"]) == set(kept)
    with pytest.raises(ValueError, match=rf"no evaluation for {set_name}/newcomer\.json: run dvc repro"):
        current(evaluations, rocs, {set_name: [*kept, "newcomer"]})
