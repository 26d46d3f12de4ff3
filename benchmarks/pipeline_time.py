"""A new user's first run, timed: a fresh clone's full ``dvc repro``, stage by stage, then
the no-op ``dvc status`` and ``dvc repro`` that follow it.

Clones this repository's HEAD into ``--clone`` (or reuses a clone given with ``--reuse``),
runs ``dvc repro`` there with its output streamed to this terminal and each stage's wall
time taken from DVC's "Running stage" lines (a stage's time runs until the next stage
starts or the run ends: DVC's own bookkeeping for it is included), then times ``dvc status``
and a no-op ``dvc repro`` ``--repeats`` times each as whole processes (median). Writes a
JSON report and prints the per-stage table in Markdown for the README.

    python benchmarks/pipeline_time.py --clone /tmp/first-run --out benchmarks/results/pipeline_time.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNNING = re.compile(r"^Running stage '([^']+)'")
ROOT = Path(__file__).resolve().parent.parent


def timed_repro(project: Path, force: bool = False) -> tuple[dict[str, float], float]:
    """(seconds per stage that ran, in run order; the whole command's seconds).

    ``force`` runs every stage (``dvc repro -f``): a clone of an older commit whose committed
    outputs match their deps would otherwise skip those stages."""
    started = time.perf_counter()
    stages: dict[str, float] = {}
    current: tuple[str, float] | None = None
    command = ["dvc", "repro", *(["-f"] if force else [])]
    process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               bufsize=1)
    assert process.stdout is not None
    for line in process.stdout:
        sys.stdout.write(line)
        match = RUNNING.match(line)
        if match:
            now = time.perf_counter()
            if current is not None:
                stages[current[0]] = now - current[1]
            current = (match.group(1), now)
    if process.wait() != 0:
        raise SystemExit(f"dvc repro failed in {project} (exit {process.returncode})")
    ended = time.perf_counter()
    if current is not None:
        stages[current[0]] = ended - current[1]
    return stages, ended - started


def median_seconds(command: list[str], project: Path, repeats: int) -> float:
    """Median wall time of ``command`` run as a whole process ``repeats`` times."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, cwd=project, check=True, capture_output=True)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def stage_group(stage: str) -> str:
    """``evaluate_zoo@sface_2021dec-lfw`` → ``evaluate_zoo``: the dvc.yaml stage a run belongs to."""
    return stage.split("@")[0]


def markdown(stages: dict[str, float], total: float) -> str:
    groups: dict[str, float] = {}
    for stage, seconds in stages.items():
        groups[stage_group(stage)] = groups.get(stage_group(stage), 0.0) + seconds
    rows = [f"| {name} | {seconds / 60:.1f} |" for name, seconds in groups.items()]
    return "\n".join(["| stage | minutes |", "|---|---|", *rows, f"| **all (`dvc repro`)** | **{total / 60:.1f}** |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--clone", type=Path, help="a new folder: git clone of this repository's HEAD")
    where.add_argument("--reuse", type=Path, help="an existing clone: run there as it is")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--force", action="store_true", help="dvc repro -f: run every stage, cached or not")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "pipeline_time.json")
    args = parser.parse_args()
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    project = args.reuse
    if args.clone is not None:
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(args.clone)], check=True)
        project = args.clone
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True,
                            text=True).stdout.strip()
    stages, total = timed_repro(project, force=args.force)
    report = {
        "machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(),
        "commit": commit, "forced": args.force,
        "repro_seconds": round(total, 1),
        "stage_seconds": {stage: round(seconds, 1) for stage, seconds in stages.items()},
        "noop_status_seconds": round(median_seconds(["dvc", "status"], project, args.repeats), 2),
        "noop_repro_seconds": round(median_seconds(["dvc", "repro"], project, args.repeats), 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(stages, total))
    print(f"no-op dvc status {report['noop_status_seconds']} s, no-op dvc repro {report['noop_repro_seconds']} s "
          f"(median of {args.repeats})")


if __name__ == "__main__":
    main()
