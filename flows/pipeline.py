"""Prefect flow ``face-pipeline``: runs the DVC stages as Prefect tasks.

DVC stays the source of truth for *what* reruns (its cache and ``dvc.lock``); Prefect adds
scheduling, retries, a run history with logs and the leaderboard as an artifact in the UI.

    python -m flows.pipeline run [--project DIR] [--stage NAME ...] [--set KEY=VALUE ...]
    python -m flows.pipeline serve [--cron "0 3 * * *"] [--project DIR]   (deployment face-pipeline/nightly-serve)
    prefect deploy --all       (prefect.yaml: the same flow on a work pool, for workers)

What the Prefect UI shows is set here: every parameter's type and help (the docstring's
``Args``, which Prefect reads; the stages as a choice list), the tags, and each run's name
(what it reproduces and which params it overrides).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from facerec.pipeline import STAGES as DVC_STAGES
from facerec.runtime.offline import silence_network

# Before Prefect and DVC are imported: they read telemetry settings at import time.
silence_network()

from filelock import FileLock, Timeout  # noqa: E402
from prefect import flow, get_run_logger, tags, task  # noqa: E402
from prefect import serve as serve_deployments  # noqa: E402
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact  # noqa: E402
from prefect.runtime import flow_run  # noqa: E402

# The flow's tasks, in pipeline order: every dvc.yaml stage but the gates and the detection
# report, which `dvc repro` runs as dependencies of the stages after them. Plain assignments,
# not annotated ones: `prefect deploy` reads the flow's signature from this source, executing
# only imports and plain assignments, and the parameter types below are built from these.
STAGES = tuple(stage for stage in DVC_STAGES if stage not in ("gate", "detect_report"))
# A stage name as the UI's run form offers it: a choice among the stages, not free text.
Stage = StrEnum("Stage", [(stage, stage) for stage in STAGES])  # type: ignore[misc]  (members from dvc.yaml)

# Every run and deployment carries the project's tag and its kind's (the UI filters by them).
PROJECT_TAG = "facerec"
PIPELINE_TAGS = [PROJECT_TAG, "pipeline"]
TUNING_TAGS = [PROJECT_TAG, "tuning"]

# `serve`'s deployment: a name of its own, so that serving never takes over (and, when
# stopped, pauses) prefect.yaml's work-pool deployment `nightly`.
SERVE_DEPLOYMENT = "nightly-serve"

# Inside .dvc/tmp, which `dvc init` already git-ignores.
FLOW_LOCK = Path(".dvc") / "tmp" / "facerec-flow.lock"


def run_dvc(arguments: list[str], project: Path) -> None:
    """``dvc <arguments>`` in ``project``, its output streamed line by line to the run log.

    ``--wait-for-lock`` makes a ``dvc`` command started by hand in the same project delay
    this one instead of failing it."""
    logger = get_run_logger()
    # DVC from this interpreter, and its bin first on PATH so the stages' `python` is this
    # venv's too, even when `serve` or a worker was started without activating the venv.
    # Unbuffered so the stage scripts' output reaches the log line by line, not at exit.
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "dvc", "--wait-for-lock", *arguments]
    logger.info("$ %s (in %s)", " ".join(command[2:]), project)
    with subprocess.Popen(
        command,
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if line.strip():
                logger.info(line.rstrip())
    if process.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(arguments)} failed with exit code {process.returncode}")


@task(retries=1, retry_delay_seconds=5, task_run_name="dvc-repro-{stage}")
def run_stage(stage: str, project: Path, set_params: list[str] | None = None, experiment: str | None = None) -> None:
    """Reproduce one stage (with any stale upstream stage).

    Plain ``dvc repro <stage>`` rather than ``--single-item``: a subset run such as
    ``stages=["train"]`` must not train on stale or missing aligned data, and stages that are
    up to date cost only a status check. With ``set_params`` (``key=value``), the stage runs
    as ``dvc exp run -S ...`` instead: DVC itself writes the values into params.yaml (where
    they stay for the following stages) and records the run as experiment ``experiment``.
    """
    if set_params:
        options = [f"--set-param={assignment}" for assignment in set_params]
        run_dvc(["exp", "run", *(["--name", experiment] if experiment else []), *options, stage], project)
    else:
        run_dvc(["repro", stage], project)


@task(task_run_name="dvc-exp-save-{name}")
def save_experiment(name: str, project: Path) -> None:
    """Record the workspace, every stage now reproduced, as experiment ``name`` (replacing the
    partial one ``dvc exp run`` saved after the first stage)."""
    run_dvc(["exp", "save", "--force", "--name", name], project)


def parameter_overrides(overrides: dict[str, Any] | None, data_sets: dict[str, str] | None) -> list[str]:
    """``dvc exp run -S`` assignments: dotted params.yaml keys, plus photo folders as ``data.sets.<name>.images``."""
    assignments = {**(overrides or {}),
                   **{f"data.sets.{name}.images": folder for name, folder in (data_sets or {}).items()}}
    # YAML flow values, so that lists and booleans reach params.yaml with their types.
    return [f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            for key, value in assignments.items()]


def dvc_project(project: str) -> Path:
    """The absolute root of a DVC project; an error when ``project`` is not one."""
    root = Path(project).resolve()
    if not (root / ".dvc").is_dir():
        raise ValueError(f"{root} is not a DVC project (no .dvc directory)")
    return root


@contextmanager
def flow_lock(root: Path) -> Iterator[None]:
    """Hold the project's flow lock, which every flow here takes (face-pipeline, face-monitor):
    a run started meanwhile waits, then finds its stages up to date, instead of failing on
    DVC's repo lock halfway or interleaving with this run."""
    (root / FLOW_LOCK).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / FLOW_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        get_run_logger().info("Another face-pipeline run holds %s; waiting for it to finish", lock.lock_file)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def select_stages(stages: list[str] | tuple[str, ...] | None) -> list[str]:
    """The requested stages in pipeline order (all when None or empty); unknown names are an error."""
    if not stages:
        return list(STAGES)
    unknown = [name for name in stages if name not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid stages are {list(STAGES)}")
    return [name for name in STAGES if name in stages]


def run_tags(stages: list[str] | tuple[str, ...] | None) -> list[str]:
    """The tags of a run of ``stages``: the project's, and ``tuning`` for a run of the search
    alone, else ``pipeline``."""
    return TUNING_TAGS if select_stages(stages) == ["tune"] else PIPELINE_TAGS


def describe_run(stages: list[str] | tuple[str, ...] | None, overrides: dict[str, Any] | None,
                 data_sets: dict[str, str] | None) -> str:
    """A run's name as the UI lists it: what it reproduces, then the params it overrides,
    e.g. ``repro train+evaluate | train.epochs=2``."""
    selected = select_stages(stages)
    what = "repro all" if selected == list(STAGES) else "repro " + "+".join(selected)
    changed = [assignment if len(assignment) <= 60 else assignment[:57] + "..."
               for assignment in parameter_overrides(overrides, data_sets)]
    return " | ".join([what, *changed])


def _run_name() -> str:
    parameters = flow_run.parameters
    return describe_run(parameters.get("stages"), parameters.get("overrides"), parameters.get("data_sets"))


def experiment_name(run_name: str, run_id: str) -> str:
    """The DVC experiment a run with overrides is saved as: its name made a valid git ref name
    (no spaces, ``|`` or ``=``) plus the run id's first 8 characters, unique per run."""
    return "prefect-" + re.sub(r"[^A-Za-z0-9._-]+", "-", run_name).strip("-.")[:80] + "-" + run_id[:8]


@flow(name="face-pipeline", flow_run_name=_run_name,
      description="Reproduce the DVC pipeline stage by stage (DVC decides what reruns) and publish the leaderboard.")
def face_pipeline(
    project: str = ".",
    stages: tuple[Stage, ...] = tuple(Stage),
    overrides: dict[str, Any] = {},  # noqa: B006  (Prefect's form needs a value, not None; never mutated)
    data_sets: dict[str, str] = {},  # noqa: B006
) -> list[dict[str, Any]] | None:
    """Reproduce the DVC pipeline of ``project`` stage by stage; return the leaderboard rows.

    Parameter changes are applied by DVC itself, ``dvc exp run -S``, with the first stage,
    and the finished run is saved as a DVC experiment (``dvc exp show``) named after the run.
    Runs hold the flow lock (``flow_lock``) for their whole stage sequence, so a second run
    started meanwhile (a manual run beside the nightly schedule) waits for the first.
    The leaderboard is published (and returned) only when this run reproduced it, so the
    artifact never shows a board that is stale against stages this run just changed.

    Args:
        project: Root folder of the DVC project to reproduce (its params.yaml and dvc.yaml), as
            the worker sees it.
        stages: The stages to reproduce, in any order; each runs with whatever it needs that is
            stale. Leave all of them for the whole pipeline.
        overrides: params.yaml values to change for this run, by dotted key, for example
            {"train.epochs": 2, "train.head.margin": 0.3}; written by dvc exp run -S.
        data_sets: Photo folders to use instead of params.yaml's, by set name, for example
            {"lfw": "/data/my_people"} (sets data.sets.NAME.images).
    """
    selected = select_stages(stages)
    root = dvc_project(project)
    set_params = parameter_overrides(overrides, data_sets)
    experiment = experiment_name(flow_run.name, flow_run.id) if set_params else None
    with flow_lock(root):
        for position, stage in enumerate(selected):
            run_stage(stage, root, set_params if position == 0 else None, experiment)
        if experiment:
            save_experiment(experiment, root)
        if "tune" in selected and (root / "metrics" / "tune.json").exists():
            _publish_tuning(root)
        if "leaderboard" not in selected or not (root / "metrics" / "leaderboard.md").exists():
            return None
        return _publish_leaderboard(root)


def _publish_leaderboard(root: Path) -> list[dict[str, Any]]:
    """The leaderboard as a table artifact (sortable in the UI), as markdown, and a link to the
    interactive page; returns its rows."""
    rows = json.loads((root / "metrics" / "leaderboard.json").read_text(encoding="utf-8"))
    page = root / "metrics" / "leaderboard.html"
    # Four decimals, as the markdown board shows them: the table is for reading, the json for tools.
    table = [{key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}
             for row in rows]
    create_table_artifact(key="leaderboard-table", table=table, description=f"Face model leaderboard of {root}")
    create_markdown_artifact(
        key="leaderboard",
        markdown=(root / "metrics" / "leaderboard.md").read_text(encoding="utf-8"),
        description=f"Face model leaderboard of {root}"
        + (f"; interactive page: {page.as_uri()}" if page.exists() else ""),
    )
    if page.exists():
        create_link_artifact(key="leaderboard-page", link=page.as_uri(), link_text="The interactive leaderboard page",
                             description="ROC curves, Pareto front and every metric; opens offline.")
    return rows


def _publish_tuning(root: Path) -> None:
    """The tuning result as a markdown artifact: the best values and the command that trains with them."""
    result = json.loads((root / "metrics" / "tune.json").read_text(encoding="utf-8"))
    lines = [f"## Optuna study `{result['study']}`",
             f"{result['trials']} trials: {result['complete']} complete, {result['pruned']} pruned, "
             f"{result['failed']} failed; objective {result['metric']} on people held out of training."]
    if "best_params" in result:
        lines += ["", f"Best {result['best_value']:.4f} (trial {result['best_trial']}):", "",
                  *[f"- `{key}` = {value:g}" for key, value in result["best_params"].items()],
                  "", f"Train with them: `{result['train_with_best']}`"]
    create_markdown_artifact(key="tuning", markdown="\n".join(lines), description=f"Optuna study of {root}")


def main(argv: list[str] | None = None) -> None:
    """Command line: run the flow once, or serve it on a cron schedule."""
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline once")
    run.add_argument("--stage", action="append", dest="stages", choices=STAGES,
                     help="run only this stage and what it needs (repeatable; default: all)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a params.yaml value through dvc exp run -S, e.g. train.epochs=2 (repeatable)")
    serve = commands.add_parser("serve", help=f"serve deployment face-pipeline/{SERVE_DEPLOYMENT} on a schedule")
    serve.add_argument("--cron", default="0 3 * * *", help='cron schedule (default "0 3 * * *")')
    for sub in (run, serve):
        sub.add_argument("--project", default=".", help="DVC project root (default: .)")
    args = parser.parse_args(argv)

    # Absolute, so the deployment's default parameter means the same wherever a run executes.
    project = str(Path(args.project).resolve())
    if args.command == "run":
        with tags(*run_tags(args.stages)):
            face_pipeline(project=project, stages=tuple(select_stages(args.stages)),
                          overrides=dict(_assignment(text) for text in args.set))
    else:
        # One run at a time, as prefect.yaml's deployments (Flow.serve takes no concurrency limit).
        deployment = face_pipeline.to_deployment(name=SERVE_DEPLOYMENT, cron=args.cron, parameters={"project": project},
                                                 tags=PIPELINE_TAGS, concurrency_limit=1)
        serve_deployments(deployment)


def _assignment(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise SystemExit(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=2")
    return key, yaml.safe_load(value)


if __name__ == "__main__":
    main()
