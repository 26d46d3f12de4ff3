"""Aligned 112×112 face crops (the align stage's output) as tensors for training and embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from facerec.runtime.io import read_table

ALIGNED_MANIFEST = "manifest.parquet"


def read_aligned_manifest(aligned_dir: str | Path) -> pd.DataFrame:
    return read_table(Path(aligned_dir) / ALIGNED_MANIFEST)


def load_crops(aligned_dir: str | Path, paths: list[str]) -> torch.Tensor:
    """Decode aligned crops into an N×3×112×112 uint8 tensor (RGB)."""
    aligned_dir = Path(aligned_dir)
    crops = np.empty((len(paths), 112, 112, 3), dtype=np.uint8)
    for index, path in enumerate(tqdm(paths, desc="load crops", unit="img", mininterval=5)):
        with Image.open(aligned_dir / path) as image:
            crops[index] = np.asarray(image.convert("RGB"))
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()


def normalise(crops: torch.Tensor) -> torch.Tensor:
    """uint8 RGB N×3×H×W → float in [-1, 1], the (x/255 − 0.5)/0.5 input convention."""
    return crops.float().div_(127.5).sub_(1.0)
