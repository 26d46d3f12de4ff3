"""Where training faces come from: the align stage's folder, or insightface's train.rec.

Both give a manifest (``path``, ``identity``: one row per face) and decode chosen faces
into an N×3×112×112 uint8 RGB tensor, so the training loop does not care which it got.
For a ``.rec`` file, ``path`` is the record key and ``identity`` the record's label.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.data.recordio import InsightFaceRecords, RecordIOError

CROP_SIDE = 112


def is_recordio(source: str | Path) -> bool:
    return Path(source).suffix == ".rec"


def training_manifest(source: str | Path) -> pd.DataFrame:
    """The faces of ``source`` (an aligned folder or a ``train.rec``): ``path`` and ``identity``."""
    if not is_recordio(source):
        return read_aligned_manifest(source)
    records = InsightFaceRecords(source)
    return pd.DataFrame({"path": [str(key) for key in records.keys],
                         "identity": [f"{records.label(index):07d}" for index in range(len(records))]})


def load_training_crops(source: str | Path, paths: list[str]) -> torch.Tensor:
    """Decode the faces named by ``paths`` (manifest rows of ``source``) as uint8 N×3×112×112."""
    if not is_recordio(source):
        return load_crops(source, paths)
    records = InsightFaceRecords(source)
    position = {key: index for index, key in enumerate(records.keys)}
    crops = np.empty((len(paths), CROP_SIDE, CROP_SIDE, 3), dtype=np.uint8)
    for row, path in enumerate(tqdm(paths, desc="decode records", unit="img", mininterval=5)):
        image, _ = records[position[int(path)]]
        if image.shape != (CROP_SIDE, CROP_SIDE, 3):
            raise RecordIOError(f"{source}: record {path} is {image.shape[1]}×{image.shape[0]}, not an aligned "
                                f"{CROP_SIDE}×{CROP_SIDE} face")
        crops[row] = image
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
