"""Aligned 112×112 face crops (the align stage's output): its manifest, and the crops as
bytes or as tensors for training and embedding.

An aligned folder holds ``manifest.parquet`` (one row per face: ``path``, ``source``,
``identity``, ``alignment_error``), ``rejects.parquet`` and ``crops.parquet``: every crop's
JPEG bytes keyed by the manifest's ``path``. One file for all crops rather than one JPEG
each: DVC hashes and lists a folder of 18,000 small files on every ``dvc status`` (it took
seconds per stage that named the folder), a single file in a blink.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from facerec.runtime.io import read_table, write_table

ALIGNED_MANIFEST = "manifest.parquet"
CROPS = "crops.parquet"
CROP_COLUMNS = ["path", "jpeg"]


class AlignedFolderError(ValueError):
    """An aligned folder that lacks what a reader asks for; the message names the folder."""


def read_aligned_manifest(aligned_dir: str | Path) -> pd.DataFrame:
    return read_table(Path(aligned_dir) / ALIGNED_MANIFEST)


def write_crops(aligned_dir: str | Path, paths: Sequence[str], jpegs: Sequence[bytes]) -> None:
    """Write the crops' JPEG bytes, ``jpegs[i]`` under the manifest path ``paths[i]``."""
    write_table(Path(aligned_dir) / CROPS, pd.DataFrame({"path": list(paths), "jpeg": list(jpegs)},
                                                        columns=CROP_COLUMNS))


def crop_table(aligned_dir: str | Path) -> pd.Series:
    """Every crop's JPEG bytes of the folder, indexed by manifest path."""
    location = Path(aligned_dir) / CROPS
    if not location.is_file():
        raise AlignedFolderError(f"{location}: missing; the folder was not written by this version's align "
                                 "stage (dvc repro align)")
    return pd.read_parquet(location).set_index("path")["jpeg"]


def read_crop_bytes(aligned_dir: str | Path, paths: Sequence[str]) -> list[bytes]:
    """The JPEG bytes of the crops named by ``paths`` (manifest paths), in that order."""
    location = Path(aligned_dir) / CROPS
    crops = crop_table(aligned_dir)
    missing = [path for path in paths if path not in crops.index]
    if missing:
        raise AlignedFolderError(f"{location}: no crop for {missing[:3]} ({len(missing)} paths); rerun the align stage")
    return list(crops.loc[list(paths)]) if len(paths) else []


def decode_crop(jpeg: bytes) -> np.ndarray:
    """One crop's JPEG bytes as H×W×3 uint8 RGB (Pillow, as the crops were written)."""
    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))


def load_crops(aligned_dir: str | Path, paths: list[str]) -> torch.Tensor:
    """Decode aligned crops into an N×3×112×112 uint8 tensor (RGB)."""
    jpegs = read_crop_bytes(aligned_dir, paths)
    crops = np.empty((len(paths), 112, 112, 3), dtype=np.uint8)
    for index, jpeg in enumerate(tqdm(jpegs, desc="load crops", unit="img", mininterval=5)):
        crops[index] = decode_crop(jpeg)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()


def normalise(crops: torch.Tensor) -> torch.Tensor:
    """uint8 RGB N×3×H×W → float in [-1, 1], the (x/255 − 0.5)/0.5 input convention."""
    return crops.float().div_(127.5).sub_(1.0)
