"""Where the photo and face work runs (params.yaml ``compute``): a process pool on this
machine, or a Dask cluster (``distributed``: a LocalCluster started here, or a running
cluster joined by its scheduler's address). Either way the caller gets a
``concurrent.futures.Executor``, so the same code maps its tasks over both.

A task is a module-level function with picklable arguments. What a task needs on its worker
(a detector, a model) is built there once, on the first task, with :func:`worker_state`:
Dask's executor has no per-worker initializer, and a cluster's workers outlive one stage.
Workers are separate processes started by spawn (forking a process that runs torch's
threads can deadlock); a cluster's workers need this project installed and should run one
thread each (``dask worker --nthreads 1``), as the LocalCluster's do.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from facerec.config import ComputeParams

log = logging.getLogger(__name__)

StateT = TypeVar("StateT")

# Objects kept per worker process, by key; a few, for a cluster's workers serve many stages.
_KEPT = 4
_state: OrderedDict[Hashable, Any] = OrderedDict()
_state_lock = threading.Lock()


@dataclass(frozen=True)
class Engine:
    """An executor and how many tasks it runs at once (its workers: a joined cluster's own count)."""

    executor: Executor
    workers: int


@contextmanager
def compute_engine(params: ComputeParams) -> Iterator[Engine]:
    """The executor ``params`` name, shut down (its processes or LocalCluster stopped) on exit."""
    if params.engine == "local":
        with ProcessPoolExecutor(params.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield Engine(pool, params.workers)
        return
    with _dask_client(params) as client:
        workers = sum(client.nthreads().values())
        log.info("Dask cluster at %s: %d worker threads", client.scheduler.address, workers)
        # pure=False: every task runs (Dask would otherwise hash each batch to deduplicate it).
        with client.get_executor(pure=False) as executor:
            yield Engine(executor, max(workers, 1))


@contextmanager
def _dask_client(params: ComputeParams) -> Iterator[Any]:  # -> distributed.Client (imported on use)
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("compute.engine dask needs the package distributed: pip install -e .") from None
    with _quiet_dask():
        if params.scheduler is not None:
            with Client(params.scheduler) as client:
                yield client
            return
        # Loopback only, no dashboard: nothing of the cluster is reachable from outside this
        # machine. (Its HTTP endpoints, health and metrics, take a free port, not 8787.)
        with LocalCluster(n_workers=params.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None, worker_dashboard_address=None,
                          scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                          silence_logs=logging.WARNING) as cluster, Client(cluster) as client:
            client.wait_for_workers(params.workers)
            yield client
            # Closing, a worker gets 4 s to exit before it is killed: a busy machine can take
            # longer to unload torch, and every result is in by then. Not worth a warning.
            logging.getLogger("distributed.nanny").setLevel(logging.ERROR)


@contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's loggers at WARNING at least until the block ends (it logs every connection, start
    and stop at INFO); their levels are restored after."""
    loggers = [logging.getLogger("distributed"), logging.getLogger("distributed.nanny")]
    levels = [logger.level for logger in loggers]
    loggers[0].setLevel(max(logging.WARNING, loggers[0].getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def worker_state(key: Hashable, build: Callable[[], StateT]) -> StateT:
    """The object ``build()`` made for ``key`` in this process: built on the first task that
    asks, then reused by every later task on this worker. Call it from tasks only."""
    with _state_lock:
        if key in _state:
            _state.move_to_end(key)
        else:
            _state[key] = build()
            while len(_state) > _KEPT:
                _state.popitem(last=False)
        state: StateT = _state[key]
        return state


def limit_threads(count: int) -> None:
    """Run torch's and OpenCV's per-process thread pools on ``count`` threads in this process.
    (onnxruntime's pools belong to each session: its builder takes the count.)"""
    import cv2
    import torch

    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    cv2.setNumThreads(count)
