"""The README's screenshots of the Prefect UI and the leaderboard page, made from real runs.

Starts a Prefect server with its UI (its own PREFECT_HOME in a temporary folder), deploys
``prefect.yaml`` to the ``facerec`` process pool, triggers ``face-pipeline/nightly`` on
``--project`` and lets a worker run it once (DVC finds every stage up to date, so the run
takes a minute and publishes the committed leaderboard), then photographs in headless
Chromium (tests/browser.py) what a user looks at: the deployments, the custom-run form, the
run, its leaderboard table artifact, and ``metrics/leaderboard.html``.

    python docs/screenshots.py --project . --out docs/screenshots

The project must be up to date (``dvc status`` clean): the script refuses otherwise rather
than start hours of stages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser import Chromium  # noqa: E402
from prefect_server import PREFECT, start_prefect_server, stop_group  # noqa: E402

POOL = "facerec"


@contextmanager
def prefect_server(home: Path) -> Iterator[dict[str, str]]:
    """A Prefect server with its UI on a free port; yields the environment pointing at it."""
    server, env = start_prefect_server(home, ui=True, timeout=120)
    try:
        yield {**os.environ, **env, "DO_NOT_TRACK": "1"}
    finally:
        stop_group(server)


def _api(env: dict[str, str], path: str, body: dict) -> list | dict:
    request = urllib.request.Request(f"{env['PREFECT_API_URL']}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def run_nightly(env: dict[str, str], project: Path) -> tuple[str, str]:
    """Deploy prefect.yaml, run face-pipeline/nightly on ``project`` through a worker; (deployment id, flow run id)."""
    deploy_env = {**env, "PWD": str(ROOT)}
    subprocess.run([PREFECT, "work-pool", "create", POOL, "--type", "process"], env=deploy_env, check=True,
                   capture_output=True)
    subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=ROOT, env=deploy_env, check=True,
                   capture_output=True)
    triggered = subprocess.run([PREFECT, "deployment", "run", "face-pipeline/nightly", "--param",
                                f"project={project}"], env=deploy_env, check=True, capture_output=True, text=True)
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout)
    if run_id is None:
        raise RuntimeError(f"prefect deployment run printed no flow run id:\n{triggered.stdout}")
    subprocess.run([PREFECT, "worker", "start", "--pool", POOL, "--run-once"], cwd=ROOT, env=deploy_env, check=True,
                   capture_output=True, timeout=1800)
    with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/flow_runs/{run_id.group(1)}", timeout=30) as answer:
        run = json.load(answer)
    print(f"flow run {run['name']}: {run['state_type']}", flush=True)
    if run["state_type"] != "COMPLETED":
        raise RuntimeError(f"flow run {run['name']} ended {run['state_type']}")
    return run["deployment_id"], run["id"]


def photograph(browser: Chromium, url: str, text: str, path: Path) -> None:
    """Open ``url``, wait until the page shows ``text`` and has settled, save a screenshot."""
    browser.open(url, f"document.body && document.body.innerText.includes({json.dumps(text)})", timeout=90)
    time.sleep(2)  # charts and lazy panels finish drawing
    browser.screenshot(path)
    print(f"{path}  ({url})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="an up-to-date DVC project of this pipeline")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    project = args.project.resolve()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True,
                            text=True, check=True)
    if json.loads(status.stdout):
        raise SystemExit(f"{project} is not up to date (dvc status): run dvc repro there first")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch, prefect_server(Path(scratch)) as env:
        deployment, flow_run = run_nightly(env, project)
        ui = env["PREFECT_API_URL"].removesuffix("/api")
        [table] = _api(env, "/artifacts/filter", {"artifacts": {"key": {"any_": ["leaderboard-table"]}}})
        browser = Chromium(Path(scratch) / "chromium", width=1440, height=1000)
        try:
            photograph(browser, f"{ui}/deployments", "tune-weekly", args.out / "prefect-deployments.png")
            photograph(browser, f"{ui}/deployments/deployment/{deployment}/run", "overrides",
                       args.out / "prefect-run-form.png")
            photograph(browser, f"{ui}/runs/flow-run/{flow_run}", "repro all", args.out / "prefect-flow-run.png")
            photograph(browser, f"{ui}/artifacts/artifact/{table['id']}", "leaderboard-table",
                       args.out / "prefect-leaderboard-table.png")
            photograph(browser, (project / "metrics" / "leaderboard.html").as_uri(), "ROC",
                       args.out / "leaderboard-page.png")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
