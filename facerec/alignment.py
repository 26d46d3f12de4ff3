"""5-point similarity alignment onto the ArcFace 112×112 template (insightface convention)."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from skimage.transform import SimilarityTransform
from tqdm import tqdm

from facerec.config import AlignParams, DetectParams
from facerec.data.images import ImageRejected, load_rgb
from facerec.detection.folder import landmarks_of

log = logging.getLogger(__name__)

# Left eye, right eye, nose tip, left and right mouth corners of a 112×112 ArcFace crop.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
ALIGNED_COLUMNS = ["path", "source", "identity", "alignment_error"]


def estimate_alignment(landmarks: np.ndarray) -> np.ndarray:
    """The 2×3 similarity transform (Umeyama least squares) taking 5 landmarks onto the template."""
    transform = SimilarityTransform.from_estimate(np.asarray(landmarks, np.float64), ARCFACE_TEMPLATE)
    if not transform:
        raise ValueError(f"degenerate landmarks, no similarity transform: {landmarks.tolist()}")
    return transform.params[:2]


def warp_landmarks(landmarks: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(landmarks, np.float64) @ matrix[:, :2].T + matrix[:, 2]


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = 112) -> tuple[np.ndarray, float]:
    """Warp an RGB image so that its 5 landmarks land on the template.

    Returns the size×size×3 crop and the alignment error: the mean distance in pixels
    between the warped landmarks and the template points.
    """
    matrix = estimate_alignment(landmarks)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    error = float(np.linalg.norm(warp_landmarks(landmarks, matrix) - ARCFACE_TEMPLATE, axis=1).mean())
    return crop, error


def aligned_name(source: str, taken: set[str]) -> str:
    """The aligned crop's relative path: the source path as .jpg, keeping the original
    extension in the name only where two sources would otherwise collide."""
    name = Path(source).with_suffix(".jpg").as_posix()
    if name in taken:
        name = f"{source}.jpg"
    taken.add(name)
    return name


def align_manifest(images_root: str | Path, manifest: pd.DataFrame, out_dir: str | Path,
                   params: AlignParams, detect_params: DetectParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one aligned JPEG per manifest row under ``out_dir``; return (aligned, rejects)."""
    images_root, out_dir = Path(images_root), Path(out_dir)
    all_landmarks = landmarks_of(manifest)
    rows, rejects, taken = [], [], set()
    for row, landmarks in tqdm(zip(manifest.itertuples(index=False), all_landmarks),
                               total=len(manifest), desc=f"align {images_root.name}", unit="img",
                               mininterval=5):
        try:
            image = load_rgb(images_root / row.path, detect_params.max_image_pixels,
                             detect_params.min_image_side)
            crop, error = align_face(image, landmarks, params.size)
        except (ImageRejected, ValueError) as reason:
            rejects.append({"path": row.path, "identity": row.identity, "reason": str(reason)})
            continue
        name = aligned_name(row.path, taken)
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(target, quality=params.jpeg_quality)
        rows.append({"path": name, "source": row.path, "identity": row.identity,
                     "alignment_error": error})
    log.info("aligned %d faces into %s (%d rejected)", len(rows), out_dir, len(rejects))
    return (pd.DataFrame(rows, columns=ALIGNED_COLUMNS),
            pd.DataFrame(rejects, columns=["path", "identity", "reason"]))
