"""The Prefect flow against a real Prefect server, on a tiny real DVC project.

The tiny project has the real pipeline's stage names (``detect`` and ``align`` as foreach
groups) but stage commands that take milliseconds, so these tests check the orchestration
(Prefect states, artifact, schedule, locking, DVC caching) and not the face models.
Every stage command appends its name to ``runs.log``: that file counts real executions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest
import yaml
from prefect.client.orchestration import SyncPrefectClient
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

from conftest import PREFECT, stop_group
from flows.pipeline import (  # first: applies the offline defaults
    SERVE_DEPLOYMENT,
    STAGES,
    describe_run,
    experiment_name,
    face_pipeline,
    run_tags,
    select_stages,
)

pytestmark = pytest.mark.timeout(600)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Every stage item of the tiny pipeline, each expected to execute exactly once.
EXPECTED_RUNS = Counter(
    ["detect@a", "detect@b", "align@a", "align@b", "train", "evalset", "evaluate", "benchmark", "evaluate_zoo",
     "benchmark_zoo", "leaderboard", "monitor", "tune"]
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
  evalset:
    cmd: python step.py evalset out/evalset.txt out/align_b.txt
    deps:
      - out/align_b.txt
    outs:
      - out/evalset.txt
  evaluate:
    cmd: python step.py evaluate out/evaluate.txt out/model.txt out/evalset.txt
    deps:
      - out/model.txt
      - out/evalset.txt
    outs:
      - out/evaluate.txt
  benchmark:
    cmd: python step.py benchmark out/benchmark.txt out/model.txt
    deps:
      - out/model.txt
    outs:
      - out/benchmark.txt
  evaluate_zoo:
    cmd: python step.py evaluate_zoo out/evaluate_zoo.txt out/evalset.txt
    deps:
      - out/evalset.txt
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
  monitor:
    cmd: python step.py monitor out/monitor.txt out/model.txt out/align_b.txt
    deps:
      - out/model.txt
      - out/align_b.txt
    outs:
      - out/monitor.txt
  tune:
    cmd: python step.py tune out/tune.txt out/align_a.txt
    deps:
      - out/align_a.txt
    params:
      - train.epochs
    outs:
      - out/tune.txt
"""

PARAMS_YAML = """\
sets:
  a: raw/a.txt
  b: raw/b.txt
train:
  epochs: 1
"""


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


@pytest.mark.slow  # the overrides and work-pool tests run the whole tiny pipeline through the flow too
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


@pytest.mark.slow  # the prefect.yaml work-pool test below deploys, triggers and waits the same way
def test_deployment_run_triggered_through_server_completes(
    prefect_server: dict[str, str], client: SyncPrefectClient, tiny_project: Path, tmp_path: Path
) -> None:
    cron = "0 3 * * *"
    log = tmp_path / "serve.log"
    serve = _start(
        ["serve", "--cron", cron, "--project", str(tiny_project)], log, PREFECT_RUNNER_POLL_FREQUENCY="1"
    )
    try:
        deployment = _wait_for_deployment(client, f"face-pipeline/{SERVE_DEPLOYMENT}", serve)
        assert [schedule.schedule.cron for schedule in deployment.schedules] == [cron]
        assert deployment.parameters == {"project": str(tiny_project)}

        triggered = run_deployment(f"face-pipeline/{SERVE_DEPLOYMENT}", timeout=0)
        flow_run = _wait_final(client, triggered.id, timeout=120)

        assert flow_run.state is not None and flow_run.state.is_completed(), flow_run.state
        assert flow_run.deployment_id == deployment.id
        assert _leaderboard_artifact_data(client, flow_run.id) == LEADERBOARD_MD
        _assert_outputs(tiny_project)
        _assert_up_to_date(tiny_project)
        assert _runs(tiny_project) == EXPECTED_RUNS
    finally:
        stop_group(serve)
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
            stop_group(run)
    for run, log in zip(runs, logs):
        assert run.returncode == 0, log.read_text()[-6000:]
    # The runs overlapped and were serialised by the flow lock, not by luck of timing.
    assert sum("Another face-pipeline run holds" in log.read_text() for log in logs) == 1

    assert _runs(tiny_project) == EXPECTED_RUNS
    _assert_outputs(tiny_project)
    _assert_up_to_date(tiny_project)


def test_stage_subset_runs_in_pipeline_order_and_unknown_names_are_rejected() -> None:
    assert select_stages(["leaderboard", "detect"]) == ["detect", "leaderboard"]
    assert select_stages(()) == list(STAGES)
    with pytest.raises(ValueError, match=r"'trian'.*'train'"):
        select_stages(["detect", "trian"])


def test_run_names_say_what_ran_and_what_was_overridden_and_make_valid_experiment_names() -> None:
    assert describe_run(STAGES, {}, {}) == "repro all"
    assert describe_run(["evaluate", "train"], {"train.epochs": 2}, {"lfw": "/data/people"}) == (
        "repro train+evaluate | train.epochs=2 | data.sets.lfw.images=/data/people")
    assert run_tags(["tune"]) == ["facerec", "tuning"] and run_tags(None) == ["facerec", "pipeline"]
    name = experiment_name("repro train | train.epochs=2", "0a1b2c3d-4e5f")
    assert name == "prefect-repro-train-train.epochs-2-0a1b2c3d"
    subprocess.run(["git", "check-ref-format", f"refs/exps/{name}"], check=True)  # DVC keeps experiments as git refs


def test_overrides_are_applied_by_dvc_and_the_run_is_saved_as_an_experiment(
    client: SyncPrefectClient, tiny_project: Path
) -> None:
    subprocess.run(["git", "add", "-A"], cwd=tiny_project, check=True)
    subprocess.run(["git", "commit", "-qm", "tiny project"], cwd=tiny_project, check=True)
    face_pipeline(project=str(tiny_project))
    before = _runs(tiny_project)

    state = face_pipeline(project=str(tiny_project), overrides={"train.epochs": 3}, return_state=True)

    assert state.is_completed(), state
    assert yaml.safe_load((tiny_project / "params.yaml").read_text())["train"]["epochs"] == 3
    # DVC reran the stages that read the value, and only those (the stand-in model file comes
    # out identical, so nothing downstream of it is stale).
    assert _runs(tiny_project) - before == Counter(["train", "tune"])
    _assert_up_to_date(tiny_project)
    flow_run = client.read_flow_run(state.state_details.flow_run_id)
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], cwd=tiny_project,
                           capture_output=True, text=True, check=True)
    experiments = {experiment["name"]: experiment for baseline in json.loads(shown.stdout)
                   for experiment in baseline.get("experiments") or []}
    assert flow_run.name == "repro all | train.epochs=3"
    saved = experiments[experiment_name(flow_run.name, str(flow_run.id))]["revs"][0]["data"]
    assert saved["params"]["params.yaml"]["data"]["train"]["epochs"] == 3


def _wait_for_deployment(client: SyncPrefectClient, name: str, process: subprocess.Popen, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.read_deployment_by_name(name)
        except ObjectNotFound:
            assert process.poll() is None, f"the process serving {name} exited before creating it"
            assert time.monotonic() < deadline, f"deployment {name} never appeared"
            time.sleep(1)


def test_prefect_yaml_deploys_to_a_work_pool_whose_worker_runs_the_pipeline(
    prefect_server: dict[str, str], client: SyncPrefectClient, tiny_project: Path, tmp_path: Path
) -> None:
    definition = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    pool = definition["deployments"][0]["work_pool"]["name"]
    env = {**os.environ, "PWD": str(REPO_ROOT)}  # prefect.yaml's pull step names the folder deployed from
    subprocess.run([PREFECT, "work-pool", "create", pool, "--type", "process"], env=env, check=True,
                   capture_output=True)
    deploy = subprocess.run([PREFECT, "--no-prompt", "deploy", "--all"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True)
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-4000:]
    for entry in definition["deployments"]:
        flow_name = entry["entrypoint"].split(":")[1].replace("_", "-")
        deployment = client.read_deployment_by_name(f"{flow_name}/{entry['name']}")
        assert deployment.work_pool_name == pool
        assert [schedule.schedule.cron for schedule in deployment.schedules] == [
            schedule["cron"] for schedule in entry["schedules"]]
        assert sorted(deployment.tags) == sorted(entry["tags"]) and "facerec" in deployment.tags
        assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options is not None
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        # What the UI's run form is built from: a type and help for every parameter.
        schema = deployment.parameter_openapi_schema
        for name, parameter in schema["properties"].items():
            assert parameter.get("type") and parameter.get("description"), (entry["name"], name, parameter)
    nightly = client.read_deployment_by_name("face-pipeline/nightly")
    stages = nightly.parameter_openapi_schema["properties"]["stages"]
    assert stages["type"] == "array" and stages["default"] == list(STAGES)
    choices = nightly.parameter_openapi_schema["definitions"][stages["items"]["$ref"].split("/")[-1]]
    assert choices["enum"] == list(STAGES)  # the form offers the stage names
    assert sorted(client.read_deployment_by_name("face-pipeline/tune-weekly").tags) == ["facerec", "tuning"]

    triggered = run_deployment("face-pipeline/nightly", parameters={"project": str(tiny_project)}, timeout=0)
    worker = subprocess.run([PREFECT, "worker", "start", "--pool", pool, "--run-once"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    flow_run = _wait_final(client, triggered.id, timeout=60)

    assert flow_run.state is not None and flow_run.state.is_completed(), worker.stdout[-6000:] + worker.stderr[-6000:]
    assert flow_run.name == "repro all" and sorted(flow_run.tags) == ["facerec", "pipeline"]
    assert _leaderboard_artifact_data(client, flow_run.id) == LEADERBOARD_MD
    table = client.read_artifacts(artifact_filter=ArtifactFilter(
        key=ArtifactFilterKey(any_=["leaderboard-table"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    assert [artifact.type for artifact in table] == ["table"] and json.loads(table[0].data) == LEADERBOARD_ROWS
    assert _runs(tiny_project) == EXPECTED_RUNS
    _assert_up_to_date(tiny_project)

    # `serve` beside the pool deployments registers a deployment of its own and, stopped,
    # leaves the pool's nightly deployment as it was.
    log = tmp_path / "serve.log"
    serve = _start(["serve", "--project", str(tiny_project)], log)
    try:
        served = _wait_for_deployment(client, f"face-pipeline/{SERVE_DEPLOYMENT}", serve)
        assert served.work_pool_name is None and sorted(served.tags) == ["facerec", "pipeline"]
        assert served.global_concurrency_limit is not None and served.global_concurrency_limit.limit == 1
    finally:
        stop_group(serve)
        print(log.read_text()[-6000:])  # pytest shows it when the test failed
    after = client.read_deployment_by_name("face-pipeline/nightly")
    assert (after.work_pool_name, after.paused, after.pull_steps) == (pool, False, nightly.pull_steps)
    assert after.parameters == nightly.parameters
