"""5-point similarity alignment onto the ArcFace 112×112 template (insightface convention)."""

from __future__ import annotations

import hashlib
import io
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
from facerec.data.digests import check_photo
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


def _align_chunk(task: tuple[Path, list[dict], AlignParams, DetectParams]) -> list[dict]:
    """Align and encode the crops of a chunk of manifest rows: each row comes back with its
    alignment error and crop's JPEG bytes, or with the reason it could not be aligned."""
    source, rows, params, detect_params = task
    for row in rows:
        location = photo_location(source, row["source"])
        digest = row.pop("digest")
        if digest is not None:  # outside the try: a changed photo stops the stage, it is no reject
            check_photo(location, digest, "it was detected")
        try:
            image = load_rgb(location, detect_params.max_image_pixels, detect_params.min_image_side)
            crop, row["alignment_error"] = align_face(image, np.asarray(row.pop("landmarks")), params.size)
        except (ImageRejected, ValueError) as reason:
            row["reason"] = str(reason)
            continue
        encoded = io.BytesIO()
        Image.fromarray(crop).save(encoded, format="JPEG", quality=params.jpeg_quality)
        row["jpeg"] = encoded.getvalue()
    return rows


def align_manifest(source: str | Path, manifest: pd.DataFrame, params: AlignParams,
                   detect_params: DetectParams, digests: pd.Series | None = None, workers: int = 2
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Align each photo's subject face, in ``workers`` threads; return
    (aligned: ALIGNED_COLUMNS and ``jpeg``, the crop's bytes; rejects). With ``digests``
    (by path, detect's photos.parquet) each photo is checked to be the one detected.

    Threads, not processes: decoding, warping and encoding all release the GIL, and a
    process pool's start-up (importing torch in each) cost more than the work on small sets."""
    source = Path(source)
    photos = subjects(manifest)
    taken: set[str] = set()
    tasks = [{"path": aligned_name(row.path, row.identity, taken), "source": row.path,
              "identity": row.identity, "landmarks": landmarks.tolist(),
              "digest": None if digests is None else digests[row.path]}
             for row, landmarks in zip(photos.itertuples(index=False), landmarks_of(photos))]
    chunks = [(source, tasks[i:i + 64], params, detect_params) for i in range(0, len(tasks), 64)]
    done: list[dict] = []
    with ThreadPoolExecutor(workers) as pool, \
            tqdm(total=len(tasks), desc=f"align {source.name}", unit="img", mininterval=5) as progress:
        for _, rows in bounded_map(pool, _align_chunk, chunks, 2 * workers):
            done.extend(rows)
            progress.update(len(rows))
    aligned = [row for row in done if "reason" not in row]
    rejects = [{"path": row["source"], "identity": row["identity"], "reason": row["reason"]}
               for row in done if "reason" in row]
    log.info("aligned %d faces of %s (%d rejected)", len(aligned), source, len(rejects))
    return (pd.DataFrame(aligned, columns=[*ALIGNED_COLUMNS, "jpeg"]),
            pd.DataFrame(rejects, columns=["path", "identity", "reason"]))
