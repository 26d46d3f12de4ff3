"""The compute engine: local worker processes or a Dask cluster give the same detections, cache
rows and peer embeddings as one process (params.yaml's compute section is speed only)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import ValidationError

from conftest import CELEBA, LFW
from facerec.config import ComputeParams, DetectParams
from facerec.evaluation.sets import BOX_COLUMNS, EvaluationFaces
from facerec.faces.cache import file_digest
from facerec.faces.detection import DetectionResult, detect_photos
from facerec.faces.manifest import LANDMARK_COLUMNS, subjects
from facerec.models.peers.photos import CHUNK, embed_evaluation_faces
from facerec.registry import PEERS
from facerec.runtime.engine import compute_engine, worker_state
from facerec.runtime.io import write_table

DASK = ComputeParams(engine="dask", workers=2)  # a LocalCluster of 2 single-threaded processes


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Real photos: 9 of 6 LFW people, 2 CelebA photos of another size, a truncated JPEG
    (rejected when decoded) and a blank grey photo (no face found)."""
    root = tmp_path_factory.mktemp("engine") / "photos"
    for folder in sorted((LFW / "images").iterdir())[:6]:
        shutil.copytree(folder, root / folder.name)
    celeba = sorted(min(CELEBA.iterdir()).glob("*.jpg"))[:2]
    (root / "celeba_person").mkdir()
    for photo in celeba:
        shutil.copy2(photo, root / "celeba_person" / photo.name)
    (root / "nobody").mkdir()
    data = celeba[0].read_bytes()
    (root / "nobody" / "truncated.jpg").write_bytes(data[:len(data) // 3])
    Image.new("RGB", (250, 250), (128, 128, 128)).save(root / "nobody" / "grey.jpg")
    return root


@pytest.fixture(scope="module")
def local(photos, tmp_path_factory) -> tuple[DetectionResult, Path]:
    """The photos detected by 2 local worker processes, and the cache that run filled."""
    cache = tmp_path_factory.mktemp("local") / "cache.sqlite"
    return detect_photos(photos, DetectParams(cache=cache, batch_size=4), ComputeParams(workers=2)), cache


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A running Dask cluster of 2 single-threaded worker processes; yields its scheduler's address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=40) as running:
        yield running.scheduler_address


def _cache_rows(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as database:
        return sorted(database.execute("SELECT digest, fingerprint, result FROM results"))


def test_the_compute_section_is_speed_only_and_a_scheduler_is_dask_s():
    assert set(ComputeParams.RESULT_NEUTRAL) == set(ComputeParams.model_fields)
    with pytest.raises(ValidationError, match="is a Dask cluster's: set engine: dask"):
        ComputeParams(scheduler="tcp://127.0.0.1:8786")


def test_a_dask_cluster_detects_the_same_manifest_rejects_and_cache_rows_as_local_processes(photos, local, tmp_path):
    expected, local_cache = local
    cache = tmp_path / "cache.sqlite"
    result = detect_photos(photos, DetectParams(cache=cache, batch_size=4), DASK)

    assert sorted(expected.rejects["path"]) == ["nobody/grey.jpg", "nobody/truncated.jpg"]
    assert expected.manifest["subject"].sum() == 11 and result.cached == 0
    for name, table in (("local", expected), ("dask", result)):
        write_table(tmp_path / name / "manifest.parquet", table.manifest)
        write_table(tmp_path / name / "rejects.parquet", table.rejects)
    for table in ("manifest.parquet", "rejects.parquet"):
        assert (tmp_path / "dask" / table).read_bytes() == (tmp_path / "local" / table).read_bytes(), table
    # Every photo the workers read has its outcome cached, the two rejects too.
    assert _cache_rows(cache) == _cache_rows(local_cache) and len(_cache_rows(cache)) == 13


def _peer_faces(photos: Path, manifest: pd.DataFrame, copies: int) -> EvaluationFaces:
    """The detected subjects as an evaluation set's faces, each ``copies`` times (so that
    they fill more than one chunk)."""
    faces = subjects(manifest)
    table = faces[["path", "identity", *BOX_COLUMNS, *LANDMARK_COLUMNS]].rename(columns={"path": "source"})
    table.insert(2, "photo_digest", [file_digest(photos / path) for path in table["source"]])
    info = {"name": "engine", "photos": os.path.relpath(photos), "max_image_pixels": 40_000_000,
            "min_image_side": 32}
    return EvaluationFaces("identities", pd.concat([table] * copies, ignore_index=True), pd.DataFrame(), info)


@pytest.mark.parametrize("peer", sorted(PEERS.names))
def test_a_peer_embeds_the_same_faces_in_one_process_in_two_and_on_a_dask_cluster(peer, photos, local, cluster):
    """Bit for bit: each face meets the same batch of 32 in every split (a chunk is whole
    batches), and the peers' runtimes give the same bits on 1 or 2 threads. Each worker reads
    its chunk's photos itself, from a path given relative to this process's folder."""
    evaluation = _peer_faces(photos, local[0].manifest, copies=7)
    assert len(evaluation.faces) > CHUNK
    one = embed_evaluation_faces(peer, evaluation, ComputeParams(workers=1), 2)
    two = embed_evaluation_faces(peer, evaluation, ComputeParams(workers=2), 2)
    on_dask = embed_evaluation_faces(peer, evaluation, ComputeParams(engine="dask", scheduler=cluster), 2)

    assert one.shape[0] == len(evaluation.faces) and one.dtype == np.float32
    np.testing.assert_array_equal(one[11:22], one[:11])  # the copies: row i is face i, in order
    np.testing.assert_array_equal(two, one)
    np.testing.assert_array_equal(on_dask, one)


def _built_in(key: str) -> tuple[int, int]:
    """(this worker's process id, the identity of its object for ``key``)."""
    return os.getpid(), id(worker_state(key, object))


def _listening() -> set[str]:
    """The addresses this process and its children listen on."""
    import psutil

    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    return {connection.laddr.ip for process in processes for connection in process.net_connections("inet")
            if connection.status == psutil.CONN_LISTEN}


@pytest.mark.parametrize("engine", ["local", "dask"])
def test_a_worker_builds_its_state_once_whatever_the_engine(engine):
    with compute_engine(ComputeParams(engine=engine, workers=2)) as running:
        assert running.workers == 2
        built = list(running.executor.map(_built_in, ["detector"] * 12))
        # The LocalCluster's scheduler, workers and their HTTP endpoints: on the loopback only.
        assert _listening() <= {"127.0.0.1"}
    for pid in {pid for pid, _ in built}:
        assert len({state for other, state in built if other == pid}) == 1
