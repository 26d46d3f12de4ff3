"""The Prefect flow against a real Prefect server, on a tiny real DVC project.

The tiny project has the real pipeline's stage names (``detect`` and ``align`` as foreach
groups) but stage commands that take milliseconds, so these tests check the orchestration
(Prefect states, artifact, schedule, locking, DVC caching) and not the face models.
Every stage command appends its name to ``runs.log``: that file counts real executions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import yaml

from flows.pipeline import STAGES, face_pipeline, select_stages  # first: applies the offline defaults
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

pytestmark = pytest.mark.timeout(600)

REPO_ROOT = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")

# Every stage item of the tiny pipeline, each expected to execute exactly once.
EXPECTED_RUNS = Counter(
    ["detect@a", "detect@b", "align@a", "align@b", "train", "evaluate", "benchmark", "evaluate_zoo", "benchmark_zoo",
     "leaderboard"]
)
LEADERBOARD_ROWS = [{"model": "tiny", "accuracy": 0.99}]
LEADERBOARD_MD = "| model | accuracy |\n|---|---|\n| tiny | 0.99 |\n"

STEP_PY = f'''\
"""Stand-in stage: count the execution in runs.log, then write the stage's output."""
import json
import sys
from pathlib import Path

name, out, *inputs = sys.argv[1:]
with open("runs.log", "a") as log:
    log.write(name + "\\n")
if name == "leaderboard":
    Path(out).mkdir(exist_ok=True)
    Path(out, "leaderboard.json").write_text(json.dumps({LEADERBOARD_ROWS!r}))
    Path(out, "leaderboard.md").write_text({LEADERBOARD_MD!r})
else:
    Path(out).parent.mkdir(exist_ok=True)
    Path(out).write_text("".join(Path(i).read_text() for i in inputs) + name + "\\n")
'''

DVC_YAML = """\
stages:
  detect:
    foreach: ${sets}
    do:
      cmd: python step.py detect@${key} out/detect_${key}.txt ${item}
      deps:
        - step.py
        - ${item}
      outs:
        - out/detect_${key}.txt
  align:
    foreach: ${sets}
    do:
      cmd: python step.py align@${key} out/align_${key}.txt out/detect_${key}.txt
      deps:
        - out/detect_${key}.txt
      outs:
        - out/align_${key}.txt
  train:
    cmd: python step.py train out/model.txt out/align_a.txt
    deps:
      - out/align_a.txt
    params:
      - train.epochs
    outs:
      - out/model.txt
  evaluate:
    cmd: python step.py evaluate out/evaluate.txt out/model.txt out/align_b.txt
    deps:
      - out/model.txt
      - out/align_b.txt
    outs:
      - out/evaluate.txt
  benchmark:
    cmd: python step.py benchmark out/benchmark.txt out/model.txt
    deps:
      - out/model.txt
    outs:
      - out/benchmark.txt
  evaluate_zoo:
    cmd: python step.py evaluate_zoo out/evaluate_zoo.txt out/align_b.txt
    deps:
      - out/align_b.txt
    outs:
      - out/evaluate_zoo.txt
  benchmark_zoo:
    cmd: python step.py benchmark_zoo out/benchmark_zoo.txt
    outs:
      - out/benchmark_zoo.txt
  leaderboard:
    cmd: python step.py leaderboard metrics out/evaluate.txt out/benchmark.txt
    deps:
      - out/evaluate.txt
      - out/benchmark.txt
    outs:
      - metrics/leaderboard.json:
          cache: false
      - metrics/leaderboard.md:
          cache: false
"""

PARAMS_YAML = """\
sets:
  a: raw/a.txt
  b: raw/b.txt
train:
  epochs: 1
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_group(process: subprocess.Popen) -> None:
    """End a process started with start_new_session=True together with all its children."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server on a free port with its own sqlite database; yields its environment.

    The environment is set for this process (and so for every subprocess a test starts);
    Prefect froze its settings when it was imported, so they are overridden here as well.
    """
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "false",  # the tests need no UI; skips building its static files
    }
    log = open(home / "server.log", "w+")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"Prefect server did not become healthy:\n{log.read()[-4000:]}")
            time.sleep(0.5)

        with pytest.MonkeyPatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_HOME: home}):
                yield env
    finally:
        _stop_group(server)
        log.close()


@pytest.fixture
def client(prefect_server: dict[str, str]) -> Iterator[SyncPrefectClient]:
    with get_client(sync_client=True) as prefect_client:
        yield prefect_client


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A git + DVC project whose stages have the real pipeline's names and run in milliseconds."""
    project = tmp_path / "project"
    (project / "raw").mkdir(parents=True)
    (project / "raw" / "a.txt").write_text("photo a\n")
    (project / "raw" / "b.txt").write_text("photo b\n")
    (project / "step.py").write_text(STEP_PY)
    (project / "dvc.yaml").write_text(DVC_YAML)
    (project / "params.yaml").write_text(PARAMS_YAML)
    for command in (
        ["git", "init", "-q"],
        ["git", "config", "user.name", "facerec tests"],
        ["git", "config", "user.email", "tests@facerec.invalid"],
        [sys.executable, "-m", "dvc", "init", "-q"],
    ):
        subprocess.run(command, cwd=project, check=True)
    (project / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    return project


def _runs(project: Path) -> Counter:
    """How often each stage command has executed in the project."""
    log = project / "runs.log"
    return Counter(log.read_text().split()) if log.exists() else Counter()


def _assert_up_to_date(project: Path) -> None:
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout) == {}, status.stdout


def _assert_outputs(project: Path) -> None:
    assert (project / "out" / "model.txt").read_text() == "photo a\ndetect@a\nalign@a\ntrain\n"
    assert json.loads((project / "metrics" / "leaderboard.json").read_text()) == LEADERBOARD_ROWS
    assert (project / "metrics" / "leaderboard.md").read_text() == LEADERBOARD_MD


def _leaderboard_artifact_data(client: SyncPrefectClient, flow_run_id: UUID) -> str:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["leaderboard"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        )
    )
    assert len(artifacts) == 1, artifacts
    assert artifacts[0].type == "markdown"
    return artifacts[0].data


def _start(arguments: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``python -m flows.pipeline <arguments>`` in its own process group, output into ``log``.

    Output goes to a file, not a pipe: a run blocked on a full pipe while it holds the
    flow lock would stall the other run waiting for that lock.
    """
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.pipeline", *arguments],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_final(client: SyncPrefectClient, flow_run_id: UUID, timeout: float) -> FlowRun:
    deadline = time.monotonic() + timeout
    while True:
        flow_run = client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            return flow_run
        assert time.monotonic() < deadline, f"flow run still {flow_run.state} after {timeout} s"
        time.sleep(1)


def test_flow_runs_stages_and_publishes_leaderboard_artifact(
    client: SyncPrefectClient, tiny_project: Path
) -> None:
    state = face_pipeline(project=str(tiny_project), return_state=True)

    flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert state.result() == LEADERBOARD_ROWS
    task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run.id])))
    stage_runs = {run.name: run for run in task_runs}
    assert set(stage_runs) == {
        f"dvc-repro-{stage}" for stage in STAGES
    }
    assert all(run.state is not None and run.state.is_completed() for run in stage_runs.values())
    assert _leaderboard_artifact_data(client, flow_run.id) == LEADERBOARD_MD
    _assert_outputs(tiny_project)
    _assert_up_to_date(tiny_project)
    assert _runs(tiny_project) == EXPECTED_RUNS

    # A second run only confirms that DVC has nothing to do.
    again = face_pipeline(project=str(tiny_project), return_state=True)
    assert again.is_completed()
    assert again.result() == LEADERBOARD_ROWS
    assert _runs(tiny_project) == EXPECTED_RUNS


def test_deployment_run_triggered_through_server_completes(
    prefect_server: dict[str, str], client: SyncPrefectClient, tiny_project: Path, tmp_path: Path
) -> None:
    cron = "0 3 * * *"
    log = tmp_path / "serve.log"
    serve = _start(
        ["serve", "--cron", cron, "--project", str(tiny_project)], log, PREFECT_RUNNER_POLL_FREQUENCY="1"
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                deployment = client.read_deployment_by_name("face-pipeline/nightly")
                break
            except ObjectNotFound:
                assert serve.poll() is None, "serve exited before creating the deployment"
                assert time.monotonic() < deadline, "deployment face-pipeline/nightly never appeared"
                time.sleep(1)
        assert [schedule.schedule.cron for schedule in deployment.schedules] == [cron]
        assert deployment.parameters == {"project": str(tiny_project)}

        triggered = run_deployment("face-pipeline/nightly", timeout=0)
        flow_run = _wait_final(client, triggered.id, timeout=120)

        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
        assert flow_run.deployment_id == deployment.id
        assert _leaderboard_artifact_data(client, flow_run.id) == LEADERBOARD_MD
        _assert_outputs(tiny_project)
        _assert_up_to_date(tiny_project)
        assert _runs(tiny_project) == EXPECTED_RUNS
    finally:
        _stop_group(serve)
        print(log.read_text()[-6000:])  # pytest shows it when the test failed


def test_two_concurrent_runs_do_not_corrupt_the_project(
    prefect_server: dict[str, str], tiny_project: Path, tmp_path: Path
) -> None:
    logs = [tmp_path / f"run{number}.log" for number in (1, 2)]
    runs = [_start(["run", "--project", str(tiny_project)], log) for log in logs]
    try:
        for run in runs:
            run.wait(timeout=300)
    finally:
        for run in runs:
            _stop_group(run)
    for run, log in zip(runs, logs):
        assert run.returncode == 0, log.read_text()[-6000:]
    # The runs overlapped and were serialised by the flow lock, not by luck of timing.
    assert sum("Another face-pipeline run holds" in log.read_text() for log in logs) == 1

    assert _runs(tiny_project) == EXPECTED_RUNS
    _assert_outputs(tiny_project)
    _assert_up_to_date(tiny_project)


def test_stage_subset_runs_in_pipeline_order_and_unknown_names_are_rejected() -> None:
    assert select_stages(["leaderboard", "detect"]) == ["detect", "leaderboard"]
    with pytest.raises(ValueError, match=r"'trian'.*'train'"):
        select_stages(["detect", "trian"])


@pytest.mark.timeout(1800)  # builds the session's small real project on first use (~5 min)
def test_flow_reruns_only_the_changed_part_of_the_real_pipeline(
    client: SyncPrefectClient, small_project: Path
) -> None:
    params_file = small_project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["leaderboard"]["sort_by"] = "latency_ms"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    model = params["train"]["model_name"]
    evaluation = small_project / "metrics" / "evaluate" / f"{model}.json"
    benchmark = small_project / "metrics" / "benchmark" / f"{model}.json"
    board_file = small_project / "metrics" / "leaderboard.json"
    evaluated_at, benchmarked_at = evaluation.stat().st_mtime_ns, benchmark.stat().st_mtime_ns
    ranked_at = board_file.stat().st_mtime_ns

    state = face_pipeline(project=str(small_project), return_state=True)

    flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
    assert board_file.stat().st_mtime_ns > ranked_at  # the real leaderboard stage ran again
    # The stages before it did not depend on the change and were not rerun.
    assert (evaluation.stat().st_mtime_ns, benchmark.stat().st_mtime_ns) == (evaluated_at, benchmarked_at)
    latencies = [row["latency_ms"] for row in state.result()]
    assert latencies == sorted(latencies) and model in [row["model"] for row in state.result()]
    board = (small_project / "metrics" / "leaderboard.md").read_text()
    assert _leaderboard_artifact_data(client, flow_run.id) == board and model in board
    _assert_up_to_date(small_project)
