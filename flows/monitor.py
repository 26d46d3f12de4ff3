"""Prefect flow ``face-monitor``: the DVC ``monitor`` stage on a schedule, acting on drift.

The stage records drift in metrics/monitoring/drift.json without failing (DVC keeps the
result); this flow turns it into what the team sees: with ``monitor.on_drift: fail`` the run
fails, with ``warn`` it completes with a ``drift-warning`` artifact. Every run publishes the
per-feature summary as the ``drift-summary`` artifact.

    python -m flows.monitor run [--project DIR]
    python -m flows.monitor serve [--cron "0 4 * * *"] [--project DIR]   (deployment daily-serve)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prefect import flow, get_run_logger, tags  # noqa: E402
from prefect import serve as serve_deployments  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from facerec.config import load_params  # noqa: E402
from facerec.quality.drift import drift_markdown  # noqa: E402
from flows.pipeline import PROJECT_TAG, dvc_project, flow_lock, run_stage  # first: applies the offline defaults

DRIFT_JSON = Path("metrics") / "monitoring" / "drift.json"
MONITORING_TAGS = [PROJECT_TAG, "monitoring"]
# `serve`'s deployment, apart from prefect.yaml's work-pool deployment `daily` (flows.pipeline.SERVE_DEPLOYMENT).
SERVE_DEPLOYMENT = "daily-serve"


class DriftDetected(RuntimeError):
    """The monitored photos drifted from the training photos and monitor.on_drift is fail."""


@flow(name="face-monitor", flow_run_name="drift check",
      description="Drift of the monitored photos against the training photos (Evidently); "
                  "warns or fails per monitor.on_drift.")
def face_monitor(project: str = ".") -> dict:
    """Reproduce the ``monitor`` stage of ``project`` (and whatever it needs) under the flow
    lock, publish its drift summary, and warn or fail on drift per ``monitor.on_drift``.
    Returns the stage's drift.json.

    Args:
        project: Root folder of the DVC project to check (its params.yaml says which photos), as
            the worker sees it.
    """
    logger = get_run_logger()
    root = dvc_project(project)
    on_drift = load_params(root / "params.yaml").monitor.on_drift
    with flow_lock(root):
        run_stage("monitor", root)
        summary = json.loads((root / DRIFT_JSON).read_text(encoding="utf-8"))
    create_markdown_artifact(key="drift-summary", markdown=drift_markdown(summary),
                             description=f"Face data drift of {root}")
    if not summary["dataset_drift"]:
        logger.info("no drift: %d of %d features drifted", summary["drifted_features"], summary["features"])
        return summary
    drifted = [name for name, feature in summary["feature_drift"].items() if feature["drift_detected"]]
    message = (f"{summary['current']['aligned']} drifted from {summary['reference']['aligned']}: "
               f"{len(drifted)} of {summary['features']} features ({', '.join(drifted)}); "
               f"report {root / DRIFT_JSON.with_name('report.html')}")
    if on_drift == "fail":
        raise DriftDetected(message)
    create_markdown_artifact(key="drift-warning", markdown=f"# Warning: face data drift\n\n{message}\n",
                             description=f"Face data drift of {root}")
    logger.warning(message)
    return summary


def main(argv: list[str] | None = None) -> None:
    """Command line: check once, or serve the flow on a cron schedule."""
    parser = argparse.ArgumentParser(prog="python -m flows.monitor", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["run", "serve"],
                        help=f"run: check once; serve: deployment face-monitor/{SERVE_DEPLOYMENT} on the --cron "
                             "schedule")
    parser.add_argument("--cron", default="0 4 * * *", help='serve: cron schedule (default "0 4 * * *")')
    parser.add_argument("--project", default=".", help="DVC project root (default: .)")
    args = parser.parse_args(argv)
    # Absolute, so the deployment's default parameter means the same wherever a run executes.
    project = str(Path(args.project).resolve())
    if args.command == "run":
        with tags(*MONITORING_TAGS):
            face_monitor(project=project)
    else:
        deployment = face_monitor.to_deployment(name=SERVE_DEPLOYMENT, cron=args.cron, parameters={"project": project},
                                                tags=MONITORING_TAGS, concurrency_limit=1)
        serve_deployments(deployment)


if __name__ == "__main__":
    main()
