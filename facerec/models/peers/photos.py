"""Feed a peer the detected faces of a photo set: the photo, box and landmarks of each subject.

An evaluation set's faces are embedded in this process, or in chunks on the compute
engine's workers (``facerec.runtime.engine``): each worker builds the peer once and reads the
photos of its chunk itself (checked against the set's digests), so no pixels are sent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facerec.config import ComputeParams, DetectParams
from facerec.data.images import load_rgb
from facerec.data.sources import photo_location
from facerec.evaluation.sets import EvaluationFaces
from facerec.faces.manifest import landmarks_of, subjects
from facerec.models.peers import Embedder, PhotoFace
from facerec.models.peers.load import load_peer
from facerec.runtime.engine import compute_engine, limit_threads, worker_state
from facerec.runtime.parallel import bounded_map

# Faces a peer embeds at once, and per task sent to a worker: a chunk is whole batches, so a
# face meets the same batch as in one process (the embeddings do not depend on the split).
# Batches of 8 run SFace ~10 % faster than 32 in onnxruntime (they stay in cache), dlib and
# FaceNet at the same speed, and give every peer the same bits.
BATCH = 8
CHUNK = 8 * BATCH


def photo_faces(images: str | Path, manifest: pd.DataFrame, paths: list[str],
                detect_params: DetectParams) -> Iterator[PhotoFace]:
    """The subject face of each photo in ``paths`` (as the detection ``manifest`` records it),
    read from the photo set ``images``. A path the manifest lacks is a KeyError naming it."""
    faces = subjects(manifest).set_index("path")
    missing = [path for path in paths if path not in faces.index]
    if missing:
        raise KeyError(f"no detected subject for {missing[:5]} ({len(missing)} photos): rerun detect")
    rows = faces.loc[paths]
    boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
    landmarks = landmarks_of(rows.reset_index())
    for path, box, points in zip(paths, boxes, landmarks):
        photo = load_rgb(photo_location(images, path), detect_params.max_image_pixels, detect_params.min_image_side)
        yield PhotoFace(photo, box, points)


def _in_batches(embedder: Embedder, faces: Iterable[PhotoFace], batch_size: int) -> Iterator[np.ndarray]:
    """The embeddings of ``faces``, ``batch_size`` photos in memory at a time."""
    batch: list[PhotoFace] = []
    for face in faces:
        batch.append(face)
        if len(batch) == batch_size:
            yield embedder.embed(batch)
            batch = []
    if batch:
        yield embedder.embed(batch)


def embed_photo_faces(embedder: Embedder, faces: Iterator[PhotoFace], count: int,
                      batch_size: int = BATCH) -> np.ndarray:
    """Embeddings of ``count`` faces, ``batch_size`` photos in memory at a time, with progress."""
    outputs = []
    with tqdm(total=count, desc=embedder.name, unit="face", mininterval=10) as progress:
        for embeddings in _in_batches(embedder, faces, batch_size):
            outputs.append(embeddings)
            progress.update(len(embeddings))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def peer_threads(num_threads: int, compute: ComputeParams) -> int:
    """The threads each of ``compute.workers`` processes gives a peer out of ``num_threads``."""
    return max(1, num_threads // compute.workers)


def embed_evaluation_faces(peer: str, evaluation: EvaluationFaces, compute: ComputeParams,
                           num_threads: int) -> np.ndarray:
    """The peer's L2-normalised embeddings of the set's faces, row i for face i.

    One local worker embeds in this process on ``num_threads`` threads; otherwise chunks of
    ``CHUNK`` faces go to the ``compute`` engine's workers, each running the peer on
    ``peer_threads`` threads, and come back in order. A cluster's workers read the photos at
    the same (absolute) paths."""
    if compute.engine == "local" and compute.workers == 1:
        limit_threads(num_threads)
        return embed_photo_faces(load_peer(peer, num_threads), evaluation.photo_faces(), len(evaluation.faces))
    info = dict(evaluation.info)
    if info["photos"] is not None:
        info["photos"] = os.path.abspath(info["photos"])
    # A photo set's chunk is its rows without the crops' bytes (the workers read the photos);
    # a .bin set has no photos: its crops are the photos.
    faces = evaluation.faces.drop(columns="jpeg", errors="ignore") if info["photos"] is not None else evaluation.faces
    chunks = (faces.iloc[start:start + CHUNK] for start in range(0, len(faces), CHUNK))
    task = partial(_embed_chunk, peer, peer_threads(num_threads, compute), evaluation.kind, info)
    outputs = []
    with compute_engine(compute) as engine, \
            tqdm(total=len(faces), desc=peer, unit="face", mininterval=10) as progress:
        for _, embeddings in bounded_map(engine.executor, task, chunks, 2 * engine.workers):
            outputs.append(embeddings)
            progress.update(len(embeddings))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def _embed_chunk(peer: str, num_threads: int, kind: str, info: dict, faces: pd.DataFrame) -> np.ndarray:
    """The embeddings of one chunk of an evaluation set's faces, in a worker process."""
    limit_threads(num_threads)
    embedder = worker_state(("peer", peer, num_threads), partial(load_peer, peer, num_threads))
    chunk = EvaluationFaces(kind, faces.reset_index(drop=True), pd.DataFrame(), info)
    return np.concatenate(list(_in_batches(embedder, chunk.photo_faces(), BATCH)))
