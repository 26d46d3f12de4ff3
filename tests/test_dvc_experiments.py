"""DVC's experiment workflow on the small real project: queue, run, compare."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from conftest import run

pytestmark = pytest.mark.timeout(1200)


def _queue_states(project: Path) -> dict[str, str]:
    """Each queued experiment's state (Queued, Running, Success, Failed) by name, from the
    table ``dvc queue status`` prints (Task, Name, Created, Status; it has no --json)."""
    lines = run(["dvc", "queue", "status"], project).stdout.splitlines()
    header = next(index for index, line in enumerate(lines) if line.split()[:2] == ["Task", "Name"])
    rows = [line.split() for line in lines[header + 1:] if line.strip() and not line.startswith("Worker")]
    return {row[1]: row[-1] for row in rows if len(row) >= 4}


def test_queued_experiments_run_in_the_background_and_show_and_diff_their_figures(project_copy: Path) -> None:
    model = yaml.safe_load((project_copy / "params.yaml").read_text())["train"]["model_name"]
    names = {"timed-10": 10, "timed-30": 30}
    for name, timed_runs in names.items():
        run(["dvc", "exp", "run", "--queue", "--name", name, "-S", f"benchmark.timed_runs={timed_runs}", "benchmark"],
            project_copy)
    assert _queue_states(project_copy) == dict.fromkeys(names, "Queued")

    run(["dvc", "queue", "start", "--jobs", "1"], project_copy)
    deadline = time.monotonic() + 900
    while (states := _queue_states(project_copy)) != dict.fromkeys(names, "Success"):
        assert "Failed" not in states.values(), run(["dvc", "queue", "logs", next(
            name for name, state in states.items() if state == "Failed")], project_copy, check=False).stdout
        assert time.monotonic() < deadline, f"queued experiments still {states} after 900 s"
        time.sleep(3)
    run(["dvc", "queue", "stop", "--kill"], project_copy, check=False)  # the worker, idle now

    shown = json.loads(run(["dvc", "exp", "show", "--json"], project_copy).stdout)
    experiments = {experiment["name"]: experiment["revs"][0]["data"] for baseline in shown
                   for experiment in baseline.get("experiments") or []}
    benchmark_file = f"metrics/benchmark/{model}.json"
    for name, timed_runs in names.items():
        data = experiments[name]
        assert data["params"]["params.yaml"]["data"]["benchmark"]["timed_runs"] == timed_runs
        assert data["metrics"][benchmark_file]["data"]["latency_ms"] > 0  # its own figures, measured

    diff = json.loads(run(["dvc", "exp", "diff", "timed-10", "timed-30", "--json"], project_copy).stdout)
    assert diff["params"]["params.yaml"]["benchmark.timed_runs"] == {"old": 10, "new": 30, "diff": 20}
    assert benchmark_file in diff["metrics"]
    # The workspace is untouched: the experiments ran in DVC's own temporary copies.
    assert yaml.safe_load((project_copy / "params.yaml").read_text())["benchmark"]["timed_runs"] != 10


def test_training_and_tuning_log_live_metrics_that_dvc_exp_show_and_dvc_plots_read(small_project: Path) -> None:
    """DVCLive's files of the small project's run: train per epoch (1 epoch, epoch 0 the
    started-from weights' validation), tune per trial (2 trials), listed by ``dvc exp show``
    and drawn by ``dvc plots``."""
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    validation = f"validation_{params['train']['validation_metric']}"
    shown = json.loads(run(["dvc", "exp", "show", "--json"], small_project).stdout)
    metrics = next(entry for entry in shown if entry["rev"] == "workspace")["data"]["metrics"]
    train = metrics["metrics/train/live/metrics.json"]["data"]
    assert train["step"] == params["train"]["epochs"] == 1
    assert train["loss"] > 0 and 0 <= train["train_accuracy"] <= 1 and 0 <= train[validation] <= 1
    tune = metrics["metrics/tune/live/metrics.json"]["data"]
    assert tune["step"] == params["tune"]["n_trials"] - 1 and 0 <= tune["best_score"] <= 1
    assert tune["pruned"] in (0, 1) and "margin" in tune

    plots = json.loads(run(["dvc", "plots", "show", "--json"], small_project).stdout)["data"]
    live = small_project / "metrics" / "train" / "live" / "plots" / "metrics"
    validation_rows = (live / f"{validation}.tsv").read_text().splitlines()
    assert validation_rows[0].split("\t") == ["step", validation] and len(validation_rows) == 3  # epochs 0 and 1
    for figure in ("loss", validation):
        assert f"metrics/train/live/plots/metrics/{figure}.tsv" in plots
    trials = (small_project / "metrics" / "tune" / "live" / "plots" / "metrics" / "score.tsv").read_text()
    assert [row.split("\t")[0] for row in trials.splitlines()[1:]] == ["0", "1"]
    assert "metrics/tune/live/plots/metrics/score.tsv" in plots
