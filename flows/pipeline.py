"""Prefect flow ``face-pipeline``: runs the DVC stages as Prefect tasks.

DVC stays the source of truth for *what* reruns (its cache and ``dvc.lock``); Prefect adds
scheduling, retries, a run history with logs and the leaderboard as an artifact in the UI.

    python -m flows.pipeline run [--project DIR]
    python -m flows.pipeline serve [--cron "0 3 * * *"] [--project DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from facerec.offline import silence_network

# Before Prefect and DVC are imported: they read telemetry settings at import time.
silence_network()

from filelock import FileLock, Timeout  # noqa: E402
from prefect import flow, get_run_logger, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

# Pipeline order of the dvc.yaml stages; ``detect`` and ``align`` are foreach groups, which
# ``dvc repro`` accepts as targets (it then reproduces every item of the group).
STAGES: tuple[str, ...] = ("detect", "align", "train", "evaluate", "benchmark", "evaluate_zoo", "benchmark_zoo",
                           "leaderboard")

# Inside .dvc/tmp, which `dvc init` already git-ignores.
FLOW_LOCK = Path(".dvc") / "tmp" / "facerec-flow.lock"


@task(retries=1, retry_delay_seconds=5, task_run_name="dvc-repro-{stage}")
def run_stage(stage: str, project: Path) -> None:
    """Reproduce one stage (with any stale upstream stage) and stream DVC's output to the run log.

    Plain ``dvc repro <stage>`` rather than ``--single-item``: a subset run such as
    ``stages=["train"]`` must not train on stale or missing aligned data, and stages that are
    up to date cost only a status check. ``--wait-for-lock`` makes a ``dvc`` command started
    by hand in the same project delay this task instead of failing it.
    """
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
    command = [sys.executable, "-m", "dvc", "--wait-for-lock", "repro", stage]
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
        raise RuntimeError(f"dvc repro {stage} failed with exit code {process.returncode}")


def select_stages(stages: list[str] | None) -> list[str]:
    """The requested stages in pipeline order (all when None); unknown names are an error."""
    if stages is None:
        return list(STAGES)
    unknown = [name for name in stages if name not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; valid stages are {list(STAGES)}")
    return [name for name in STAGES if name in stages]


@flow(name="face-pipeline")
def face_pipeline(project: str = ".", stages: list[str] | None = None) -> list[dict[str, Any]] | None:
    """Reproduce the DVC pipeline of ``project`` stage by stage; return the leaderboard rows.

    Runs hold a lock file for their whole stage sequence, so a second run started meanwhile
    (a manual run beside the nightly schedule) waits, then finds everything up to date,
    instead of failing on DVC's repo lock halfway or interleaving with the first run.
    The leaderboard is published (and returned) only when this run reproduced it, so the
    artifact never shows a board that is stale against stages this run just changed.
    """
    logger = get_run_logger()
    selected = select_stages(stages)
    root = Path(project).resolve()
    if not (root / ".dvc").is_dir():
        raise ValueError(f"{root} is not a DVC project (no .dvc directory)")

    (root / FLOW_LOCK).parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / FLOW_LOCK)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("Another face-pipeline run holds %s; waiting for it to finish", lock.lock_file)
        lock.acquire()
    try:
        for stage in selected:
            run_stage(stage, root)
        if "leaderboard" not in selected or not (root / "metrics" / "leaderboard.md").exists():
            return None
        create_markdown_artifact(
            key="leaderboard",
            markdown=(root / "metrics" / "leaderboard.md").read_text(encoding="utf-8"),
            description=f"Face model leaderboard of {root}",
        )
        return json.loads((root / "metrics" / "leaderboard.json").read_text(encoding="utf-8"))
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> None:
    """Command line: run the flow once, or serve it on a cron schedule."""
    parser = argparse.ArgumentParser(prog="python -m flows.pipeline", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline once")
    serve = commands.add_parser("serve", help="serve deployment face-pipeline/nightly on a schedule")
    serve.add_argument("--cron", default="0 3 * * *", help='cron schedule (default "0 3 * * *")')
    for sub in (run, serve):
        sub.add_argument("--project", default=".", help="DVC project root (default: .)")
    args = parser.parse_args(argv)

    # Absolute, so the deployment's default parameter means the same wherever a run executes.
    project = str(Path(args.project).resolve())
    if args.command == "run":
        face_pipeline(project=project)
    else:
        face_pipeline.serve(name="nightly", cron=args.cron, parameters={"project": project})


if __name__ == "__main__":
    main()
