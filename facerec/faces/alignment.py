"""5-point similarity alignment onto the ArcFace 112×112 template (insightface convention)."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from skimage.transform import SimilarityTransform
from tqdm import tqdm

from facerec.config import AlignParams, DetectParams
from facerec.data.images import ImageRejected, load_rgb
from facerec.data.sources import photo_location
from facerec.faces.manifest import landmarks_of, subjects
from facerec.runtime.parallel import bounded_map

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


def aligned_name(source: str, identity: str, taken: set[str]) -> str:
    """The aligned crop's relative path: the source path as .jpg, keeping the original
    extension in the name only where two sources would otherwise collide. Paths that would
    leave the output folder (absolute or with '..', possible in a photo list) are placed
    under the identity's folder with a digest of the full path."""
    parts = PurePosixPath(source).parts
    if PurePosixPath(source).is_absolute() or ".." in parts:
        digest = hashlib.blake2b(source.encode(), digest_size=4).hexdigest()
        source = f"{identity}/{digest}-{parts[-1]}"
    name = PurePosixPath(source).with_suffix(".jpg").as_posix()
    if name in taken:
        name = f"{source}.jpg"
    taken.add(name)
    return name


def _align_chunk(task: tuple[Path, Path, list[dict], AlignParams, DetectParams]) -> list[dict]:
    """Align and write the crops of a chunk of manifest rows: each row comes back with its
    alignment error, or with the reason it could not be aligned."""
    source, out_dir, rows, params, detect_params = task
    for row in rows:
        try:
            image = load_rgb(photo_location(source, row["source"]), detect_params.max_image_pixels,
                             detect_params.min_image_side)
            crop, row["alignment_error"] = align_face(image, np.asarray(row.pop("landmarks")), params.size)
        except (ImageRejected, ValueError) as reason:
            row["reason"] = str(reason)
            continue
        target = out_dir / row["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(crop).save(target, quality=params.jpeg_quality)
    return rows


def align_manifest(source: str | Path, manifest: pd.DataFrame, out_dir: str | Path, params: AlignParams,
                   detect_params: DetectParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write one aligned JPEG per photo's subject face under ``out_dir``, in
    ``detect_params.workers`` threads; return (aligned, rejects).

    Threads, not processes: decoding, warping and encoding all release the GIL, and a
    process pool's start-up (importing torch in each) cost more than the work on small sets."""
    source, out_dir = Path(source), Path(out_dir)
    photos = subjects(manifest)
    taken: set[str] = set()
    tasks = [{"path": aligned_name(row.path, row.identity, taken), "source": row.path,
              "identity": row.identity, "landmarks": landmarks.tolist()}
             for row, landmarks in zip(photos.itertuples(index=False), landmarks_of(photos))]
    chunks = [(source, out_dir, tasks[i:i + 64], params, detect_params) for i in range(0, len(tasks), 64)]
    done: list[dict] = []
    with ThreadPoolExecutor(detect_params.workers) as pool, \
            tqdm(total=len(tasks), desc=f"align {source.name}", unit="img", mininterval=5) as progress:
        for _, rows in bounded_map(pool, _align_chunk, chunks, 2 * detect_params.workers):
            done.extend(rows)
            progress.update(len(rows))
    aligned = [row for row in done if "reason" not in row]
    rejects = [{"path": row["source"], "identity": row["identity"], "reason": row["reason"]}
               for row in done if "reason" in row]
    log.info("aligned %d faces into %s (%d rejected)", len(aligned), out_dir, len(rejects))
    return (pd.DataFrame(aligned, columns=ALIGNED_COLUMNS),
            pd.DataFrame(rejects, columns=["path", "identity", "reason"]))
