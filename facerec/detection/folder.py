"""Run a detector over a folder of identity sub-folders and account for every file.

Each file ends in exactly one of two tables: the manifest (one row per accepted photo,
describing its subject face) or the rejects (path and reason).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from facerec.config import DetectParams
from facerec.data.images import ImageRejected, PhotoFile, iter_photo_files, load_rgb
from facerec.detection import Detector, Face

log = logging.getLogger(__name__)

LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in ("x", "y")]
MANIFEST_COLUMNS = ["path", "identity", "width", "height", "faces", "score",
                    "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS]
REJECT_COLUMNS = ["path", "identity", "reason"]


@dataclass
class DetectionResult:
    manifest: pd.DataFrame
    rejects: pd.DataFrame
    seconds: float

    def summary(self) -> dict:
        total = len(self.manifest) + len(self.rejects)
        reasons = self.rejects["reason"].str.split(":").str[0].value_counts()
        return {
            "files": total,
            "accepted": len(self.manifest),
            "rejected": len(self.rejects),
            "detection_rate": len(self.manifest) / total if total else None,
            "mean_score": float(self.manifest["score"].mean()) if len(self.manifest) else None,
            "multi_face_photos": int((self.manifest["faces"] > 1).sum()),
            "seconds": round(self.seconds, 1),
            "ms_per_file": round(1000 * self.seconds / total, 1) if total else None,
            "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
        }


def choose_subject(faces: list[Face], width: int, height: int, rule: str) -> Face:
    """The photo's subject among several faces: the largest box, the box nearest the
    image centre, or the most confident detection."""
    if rule == "largest":
        return max(faces, key=lambda face: face.area)
    if rule == "score":
        return max(faces, key=lambda face: face.score)
    if rule == "central":
        centre = np.array([width / 2, height / 2])

        def distance(face: Face) -> float:
            x1, y1, x2, y2 = face.box
            return float(np.hypot(*(np.array([(x1 + x2) / 2, (y1 + y2) / 2]) - centre)))

        return min(faces, key=distance)
    raise ValueError(f"unknown subject rule {rule!r}")


_worker_detector: Detector | None = None
_worker_params: DetectParams | None = None
_worker_root: Path | None = None


def _start_worker(params: DetectParams, root: Path) -> None:
    global _worker_detector, _worker_params, _worker_root
    from facerec.detection import build_detector

    # One thread per process: MTCNN's many small ops scale better across processes.
    torch.set_num_threads(1)
    _worker_detector, _worker_params, _worker_root = build_detector(params), params, root


def _detect_one(photo: PhotoFile) -> tuple[bool, dict]:
    """(accepted, manifest row) or (False, reject row) for one file, in a worker process."""
    params = _worker_params
    try:
        if photo.identity is None:
            raise ImageRejected("not inside an identity folder")
        image = load_rgb(_worker_root / photo.path, params.max_image_pixels, params.min_image_side)
        height, width = image.shape[:2]
        faces = [face for face in _worker_detector.detect(image) if face.score >= params.min_score]
        if not faces:
            raise ImageRejected(f"no face found with score >= {params.min_score}")
    except ImageRejected as reason:
        return False, {"path": photo.path, "identity": photo.identity, "reason": str(reason)}
    subject = choose_subject(faces, width, height, params.subject_rule)
    row = {"path": photo.path, "identity": photo.identity, "width": width, "height": height,
           "faces": len(faces), "score": subject.score}
    row.update(zip(("x1", "y1", "x2", "y2"), subject.box))
    row.update(zip(LANDMARK_COLUMNS, subject.landmarks.reshape(-1).tolist()))
    return True, row


def detect_folder(root: str | Path, params: DetectParams) -> DetectionResult:
    """Detect the subject face of every photo under ``root`` (identity = first-level folder),
    in ``params.workers`` processes; rows come back in sorted path order."""
    root = Path(root)
    accepted: list[dict] = []
    rejected: list[dict] = []
    started = time.perf_counter()
    files = list(iter_photo_files(root))
    log.info("detecting faces in %d files under %s with %d workers", len(files), root, params.workers)
    # spawn, not fork: forking a process that already runs torch's thread pool can deadlock.
    with ProcessPoolExecutor(params.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(params, root)) as pool:
        results = pool.map(_detect_one, files, chunksize=8)
        for ok, row in tqdm(results, total=len(files), desc=f"detect {root.name}", unit="img",
                            mininterval=5):
            (accepted if ok else rejected).append(row)
    result = DetectionResult(
        manifest=pd.DataFrame(accepted, columns=MANIFEST_COLUMNS),
        rejects=pd.DataFrame(rejected, columns=REJECT_COLUMNS),
        seconds=time.perf_counter() - started,
    )
    log.info("accepted %d, rejected %d in %.0f s", len(result.manifest), len(result.rejects), result.seconds)
    return result


def landmarks_of(manifest: pd.DataFrame) -> np.ndarray:
    """The manifest's landmarks as an N×5×2 float32 array."""
    return manifest[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(-1, 5, 2)
