"""The detection manifest's columns and the views of it that later steps read.

One row per face found: the photo (``path``, ``identity``, ``width``, ``height``), the face
(``face`` index, most confident first; ``score``; box ``x1, y1, x2, y2`` in pixel edges;
five landmarks ``lm<i>_x, lm<i>_y`` in pixel centres, ArcFace order), whether it is the
photo's ``subject``, how many ``faces`` the photo has and whether the ``whole_image`` was
taken as the face. Rejected files are listed with their ``reason``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in ("x", "y")]
MANIFEST_COLUMNS = ["path", "identity", "face", "subject", "faces", "width", "height", "score",
                    "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS, "whole_image"]
REJECT_COLUMNS = ["path", "identity", "reason"]
# Typed even when a set has no face at all, so that an empty manifest reads like a full one.
MANIFEST_DTYPES = {"path": "object", "identity": "object", "face": "int64", "subject": "bool", "faces": "int64",
                   "width": "int64", "height": "int64", "score": "float64",
                   **dict.fromkeys(["x1", "y1", "x2", "y2", *LANDMARK_COLUMNS], "float64"), "whole_image": "bool"}


def manifest_frame(rows: list[dict]) -> pd.DataFrame:
    """The manifest of ``rows`` (one dict per face) with its columns and types, sorted by photo."""
    frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS).astype(MANIFEST_DTYPES)
    return frame.sort_values(["path", "face"], ignore_index=True)


def subjects(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per accepted photo: its subject face."""
    return manifest[manifest["subject"]].reset_index(drop=True)


def landmarks_of(manifest: pd.DataFrame) -> np.ndarray:
    """The manifest's landmarks as an N×5×2 float32 array."""
    return manifest[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(-1, 5, 2)
