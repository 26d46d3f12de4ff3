"""Shared fixtures: the real data in ../shared/data and small real projects built from it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml

import facerec  # noqa: F401  (silences telemetry for every subprocess the tests start)

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()
CELEBA = SHARED_DATA / "celeba_subset"
LFW = SHARED_DATA / "lfw"
PREFECT = str(Path(sys.executable).parent / "prefect")
PROJECT_FILES = ["facerec", "stages", "dvc.yaml", "params.yaml", ".dvc/config", ".gitignore"]


# The tools the tests drive (dvc, prefect) are the ones installed beside this interpreter.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def pytest_configure(config) -> None:
    if not CELEBA.is_dir() or not LFW.is_dir():
        raise pytest.UsageError(f"the shared data is missing: expected {CELEBA} and {LFW}")


def run(command: list[str], cwd: Path, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    """Run a command, capturing text output; on failure show it in the assertion."""
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {result.returncode}\n"
                             f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}")
    return result


def write_small_lfw(target: Path, pairs_per_class: int) -> None:
    """A real LFW subset: the first ``pairs_per_class`` matched and mismatched pairs of each
    of the 10 folds of pairs.txt, half as many of View 1's pairsDevTrain.txt and
    pairsDevTest.txt, with only the images those pairs name."""
    lines = (LFW / "pairs.txt").read_text().splitlines()
    folds, per_class = (int(v) for v in lines[0].split())
    kept = []
    for fold in range(folds):
        start = 1 + fold * 2 * per_class
        kept += lines[start:start + pairs_per_class]
        kept += lines[start + per_class:start + per_class + pairs_per_class]
    view1 = {}
    for name, count in (("pairsDevTrain.txt", pairs_per_class // 2), ("pairsDevTest.txt", pairs_per_class // 2)):
        dev = (LFW / name).read_text().splitlines()
        dev_per_class = int(dev[0])
        view1[name] = dev[1:1 + count] + dev[1 + dev_per_class:1 + dev_per_class + count]
    names = set()
    for line in kept + view1["pairsDevTrain.txt"] + view1["pairsDevTest.txt"]:
        fields = line.split()
        names.update([fields[0]] if len(fields) == 3 else [fields[0], fields[2]])
    (target / "images").mkdir(parents=True)
    for name in sorted(names):
        shutil.copytree(LFW / "images" / name, target / "images" / name)
    (target / "pairs.txt").write_text(f"{folds}\t{pairs_per_class}\n" + "\n".join(kept) + "\n")
    for name, dev_lines in view1.items():
        (target / name).write_text(f"{len(dev_lines) // 2}\n" + "\n".join(dev_lines) + "\n")


def write_small_train_set(target: Path, identities: int) -> None:
    """The first ``identities`` CelebA identity folders, plus two files that must be rejected."""
    for folder in sorted(CELEBA.iterdir())[:identities]:
        shutil.copytree(folder, target / folder.name)
    first = sorted(target.iterdir())[0]
    (first / "notes.txt").write_text("not a photo\n")
    photo = sorted(first.glob("*.jpg"))[0].read_bytes()
    (first / "truncated.jpg").write_bytes(photo[: len(photo) // 3])


def make_project(root: Path, identities: int = 12, pairs_per_class: int = 12) -> Path:
    """A git + DVC repository with this project's pipeline and params pointed at a small
    real subset of the shared data: real detector, real training, real LFW pairs."""
    project = root / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)
    write_small_train_set(root / "data" / "train", identities)
    write_small_lfw(root / "data" / "lfw", pairs_per_class)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["data"]["sets"] = {"train": {"images": str(root / "data" / "train")},
                              "lfw": {"images": str(root / "data" / "lfw" / "images")}}
    params["data"]["holdout_identities"] = 3
    params["evaluate"]["sets"]["lfw"].update(
        pairs=str(root / "data" / "lfw" / "pairs.txt"),
        view1_pairs=[str(root / "data" / "lfw" / name) for name in ("pairsDevTrain.txt", "pairsDevTest.txt")])
    params["train"].update(epochs=1, batch_size=32, warmup_epochs=0.2, validation_identities=3)
    params["benchmark"].update(warmup_runs=3, timed_runs=20, throughput_batch_sizes=[8])
    params["tune"].update(n_trials=2, epochs=1, identities=None)
    params["monitor"].update(max_faces=150)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], project)
    run(["git", "config", "user.email", "test@facerec.local"], project)
    run(["git", "config", "user.name", "facerec test"], project)
    run(["dvc", "init", "-q", "-f"], project)
    shutil.copy2(PROJECT_ROOT / ".dvc" / "config", project / ".dvc" / "config")
    shutil.copytree(PROJECT_ROOT / ".dvc" / "plots", project / ".dvc" / "plots")
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "small project"], project)
    return project


@pytest.fixture(scope="session")
def small_project(tmp_path_factory) -> Path:
    """A small real project whose full pipeline has been run once with ``dvc repro``."""
    project = make_project(tmp_path_factory.mktemp("e2e"))
    # About 7 minutes on 2 free cores; the bound is for a CPU shared with other work.
    result = run(["dvc", "repro"], project, timeout=3600)
    (project / "first_repro.log").write_text(result.stdout + result.stderr)
    return project


@pytest.fixture
def project_copy(small_project: Path, tmp_path: Path) -> Path:
    """A private copy of the small project (its outputs, DVC cache and git history), for a
    test that changes params, branches or state: the shared project stays as built."""
    copy = tmp_path / "project"
    shutil.copytree(small_project, copy, symlinks=True)
    return copy


@pytest.fixture(autouse=True)
def _offline_environment(monkeypatch) -> None:
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.setitem(os.environ, "DO_NOT_TRACK", "1")


# --- a real Prefect server (Prefect is imported here only when a test asks for it) ------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen) -> None:
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
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
        "PREFECT_UI_ENABLED": "false",  # the tests need no UI; skips building its static files
    }
    log = open(home / "server.log", "w+")  # noqa: SIM115  (open while the server runs; closed in finally)
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
        stop_group(server)
        log.close()


@pytest.fixture
def client(prefect_server: dict[str, str]) -> Iterator[SyncPrefectClient]:
    """A client of the test's Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect_client:
        yield prefect_client
