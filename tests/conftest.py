"""Shared fixtures: the real data in ../shared/data and small real projects built from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import yaml
from filelock import FileLock, Timeout
from prefect_server import PREFECT, start_prefect_server, stop_group  # noqa: F401  (tests import them from here)

import facerec  # noqa: F401  (silences telemetry for every subprocess the tests start)

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()
CELEBA = SHARED_DATA / "celeba_subset"
LFW = SHARED_DATA / "lfw"
PROJECT_FILES = ["facerec", "stages", "dvc.yaml", "params.yaml", ".dvc/config", ".gitignore"]


# The tools the tests drive (dvc, prefect) are the ones installed beside this interpreter.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


def pytest_configure(config) -> None:
    if not CELEBA.is_dir() or not LFW.is_dir():
        raise pytest.UsageError(f"the shared data is missing: expected {CELEBA} and {LFW}")


@pytest.hookimpl(trylast=True)  # after -m deselected the slow and gpu tests
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, whose workers take whole modules in collection order (pyproject's
    addopts: --dist loadfile --no-loadscope-reorder): the first module that uses the small
    project first, so that one worker builds it (minutes) from the start while the others run
    the modules that do not need it; the other modules that use it last, on the built project.
    Without xdist the order stays as collected."""
    if config.getoption("dist", "no") == "no":
        return
    users = {item.path for item in items if "small_project" in getattr(item, "fixturenames", ())}
    first = next((item.path for item in items if item.path in users), None)
    items.sort(key=lambda item: 0 if item.path == first else 2 if item.path in users else 1)  # stable


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
    photos = set()  # (person, number): 393 photos, where the pairs' people have 702 in all
    for line in kept + view1["pairsDevTrain.txt"] + view1["pairsDevTest.txt"]:
        fields = line.split()
        photos.update([(fields[0], fields[1]), (fields[0], fields[2])] if len(fields) == 3
                      else [(fields[0], fields[1]), (fields[2], fields[3])])
    for name, number in sorted(photos):
        photo = Path(name) / f"{name}_{int(number):04d}.jpg"
        (target / "images" / name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(LFW / "images" / photo, target / "images" / photo)
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


# --- what the test processes of one run share ------------------------------------------
#
# Under pytest-xdist (pyproject's addopts) each worker is a process of its own, with its own
# session fixtures: the expensive ones below are built once per run in a folder every worker
# sees, by the first worker that asks, while the others wait on a file lock (pytest-xdist's
# documented pattern). Without xdist the one process does the same in its own base temp.


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder shared by every process of this test run: the run's base temp (each xdist
    worker's own base temp is a folder inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def build_once(folder: Path, build: Callable[[Path], None], timeout: float) -> Path:
    """``folder``, made by ``build(folder)`` once per test run: the first process to ask builds
    it, the others wait for it (up to ``timeout`` seconds) and use it as built. A failed build
    fails every test that asks, with the builder's error, and is not tried again."""
    built, failed = folder.with_name(folder.name + ".built"), folder.with_name(folder.name + ".failed")
    try:
        with FileLock(folder.with_name(folder.name + ".lock"), timeout=timeout):
            if failed.exists():
                pytest.fail(f"building {folder} failed in another test process:\n{failed.read_text()}", pytrace=False)
            if not built.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir(parents=True)
                try:
                    build(folder)
                except BaseException as error:
                    failed.write_text("".join(traceback.format_exception_only(error))[-8000:])
                    raise
                built.touch()
    except Timeout:
        pytest.fail(f"{folder} was still being built after {timeout:.0f} s", pytrace=False)
    return folder


def _build_small_project(root: Path) -> None:
    project = make_project(root)
    # About 7 minutes on 2 free cores; the bound is for a CPU shared with other work.
    result = run(["dvc", "repro"], project, timeout=3600)
    (project / "first_repro.log").write_text(result.stdout + result.stderr)


@pytest.fixture(scope="session")
def small_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real project whose full pipeline has been run once with ``dvc repro``: one per
    test run, shared by every test (and xdist worker) that asks. Tests read it; a test that
    changes params, branches or state works on ``project_copy``."""
    return build_once(run_folder(tmp_path_factory) / "e2e", _build_small_project, timeout=4200) / "project"


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

def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start_prefect_server(home: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    try:
        return start_prefect_server(home)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def _prefect_server_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One Prefect server for the whole test run, shared by the modules and xdist workers that
    need one; yields the environment that points a client at it.

    The first process to ask starts it; each process that uses it signs in (a file named by its
    pid). The starter stops it at the end of its session, once every other user has signed out
    (or died), and a process that asks after that starts another one.
    """
    folder = run_folder(tmp_path_factory) / "prefect-server"
    users, info = folder / "users", folder / "server.json"
    lock = FileLock(folder.with_name("prefect-server.lock"), timeout=300)
    server = None
    with lock:
        users.mkdir(parents=True, exist_ok=True)
        if info.exists():
            env = json.loads(info.read_text())
        else:
            home = folder / f"home-{os.getpid()}"
            home.mkdir()
            server, env = _start_prefect_server(home)
            info.write_text(json.dumps(env))
        (users / str(os.getpid())).touch()
    try:
        yield env
    finally:
        with lock:
            (users / str(os.getpid())).unlink()
        if server is not None:
            while True:
                with lock:
                    if not any(_alive(int(user.name)) for user in users.iterdir()):
                        info.unlink()  # nobody joins a server that is stopping
                        break
                time.sleep(1)
            stop_group(server)


@pytest.fixture(scope="module")
def prefect_server(_prefect_server_env: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The run's Prefect server, with a Prefect home of this module's own; yields its environment.

    The environment is set for this process (and so for every subprocess a test starts) while
    the module runs; Prefect froze its settings when it was imported, so they are overridden
    here as well.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home = tmp_path_factory.mktemp("prefect-home")
    env = {**_prefect_server_env, "PREFECT_HOME": str(home)}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"], PREFECT_HOME: home}):
            yield env


@pytest.fixture
def client(prefect_server: dict[str, str]) -> Iterator[SyncPrefectClient]:
    """A client of the test's Prefect server."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as prefect_client:
        yield prefect_client
