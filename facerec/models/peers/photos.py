"""Feed a peer the detected faces of a photo set: the photo, box and landmarks of each subject."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from facerec.config import DetectParams
from facerec.data.images import load_rgb
from facerec.data.sources import photo_location
from facerec.faces.manifest import landmarks_of, subjects
from facerec.models.peers import Embedder, PhotoFace


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


def embed_photo_faces(embedder: Embedder, faces: Iterator[PhotoFace], count: int, batch_size: int = 32) -> np.ndarray:
    """Embeddings of ``count`` faces, ``batch_size`` photos in memory at a time, with progress."""
    outputs, batch = [], []
    with tqdm(total=count, desc=embedder.name, unit="face", mininterval=10) as progress:
        for face in faces:
            batch.append(face)
            if len(batch) == batch_size:
                outputs.append(embedder.embed(batch))
                progress.update(len(batch))
                batch = []
        if batch:
            outputs.append(embedder.embed(batch))
            progress.update(len(batch))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)
