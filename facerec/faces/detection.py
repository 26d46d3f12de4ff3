"""Run a detector over a photo set and account for every file.

Each input file ends in exactly one of two tables: the manifest (one row per face found,
the photo's subject marked) or the rejects (path and reason). Photos are streamed in
batches to the compute engine's workers (processes here or a Dask cluster); results are
cached by file content, so a rerun detects only the photos it has not seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from itertools import chain
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facerec.config import ComputeParams, DetectParams
from facerec.data.images import ImageRejected, load_rgb
from facerec.data.sources import PhotoFile, iter_photos
from facerec.faces.cache import ResultCache, file_digest, fingerprint
from facerec.faces.detectors import Detector, Face, build_detector
from facerec.faces.manifest import LANDMARK_COLUMNS, REJECT_COLUMNS, manifest_frame
from facerec.runtime.engine import compute_engine, limit_threads, worker_state
from facerec.runtime.parallel import bounded_map

log = logging.getLogger(__name__)

# Bump when a code change alters detection results, so that cached results are not reused.
DETECTION_VERSION = 3


@dataclass
class DetectionResult:
    manifest: pd.DataFrame
    rejects: pd.DataFrame
    seconds: float
    cached: int = 0

    def summary(self) -> dict:
        photos = self.manifest[self.manifest["subject"]]
        total = len(photos) + len(self.rejects)
        reasons = self.rejects["reason"].str.split(":").str[0].value_counts()
        return {
            "files": total,
            "accepted": len(photos),
            "rejected": len(self.rejects),
            "detection_rate": len(photos) / total if total else None,
            "faces": len(self.manifest),
            "multi_face_photos": int((photos["faces"] > 1).sum()),
            "whole_image_photos": int(photos["whole_image"].sum()),
            "mean_score": float(photos["score"].mean()) if len(photos) else None,
            "reject_reasons": {str(k): int(v) for k, v in reasons.items()},
        }

    def timings(self) -> dict:
        """What varies between runs of the same inputs (kept out of the results): speed and
        how many photos came from the cache."""
        total = int(self.manifest["subject"].sum()) + len(self.rejects)
        return {"seconds": round(self.seconds, 1), "from_cache": self.cached,
                "images_per_second": round(total / self.seconds, 1) if self.seconds else None}


def choose_subject(faces: list[Face], width: int, height: int, rule: str) -> int:
    """Index of the photo's subject among several faces: the largest box, the box nearest
    the image centre, or the most confident detection."""
    if rule == "largest":
        return max(range(len(faces)), key=lambda i: faces[i].area)
    if rule == "score":
        return max(range(len(faces)), key=lambda i: faces[i].score)
    if rule == "central":
        def distance(face: Face) -> float:
            x1, y1, x2, y2 = face.box
            return float(np.hypot((x1 + x2 - width) / 2, (y1 + y2 - height) / 2))

        return min(range(len(faces)), key=lambda i: distance(faces[i]))
    raise ValueError(f"unknown subject rule {rule!r}")


def detection_fingerprint(params: DetectParams) -> str:
    """What a cached result depends on besides the photo: the detector, its settings, the code."""
    settings = params.model_dump(mode="json", exclude=set(params.RESULT_NEUTRAL))
    weights = file_digest(params.weights) if params.weights and Path(params.weights).is_file() else None
    return fingerprint(DETECTION_VERSION, settings, weights)


# --- worker side -------------------------------------------------------------------------

def _detect_photo_batch(params: DetectParams, batch: list[tuple[PhotoFile, str | None]]) -> list[dict]:
    """The outcome for each (photo, digest) (faces, or a reject reason), in a worker process."""
    # One thread per process: the detector's many small ops scale better across processes.
    limit_threads(1)
    detector: Detector = worker_state(("detector", params), partial(build_detector, params))
    photos = [photo for photo, _ in batch]
    outcomes: dict[int, dict] = {}
    images, waiting = [], []
    for index, photo in enumerate(photos):
        try:
            images.append(load_rgb(photo.location, params.max_image_pixels, params.min_image_side))
            waiting.append(index)
        except ImageRejected as reason:
            outcomes[index] = {"reject": str(reason)}
    for index, image, faces in zip(waiting, images, _detect_images(detector, images, params.max_detect_side)):
        outcomes[index] = _outcome(detector, image, faces, params)
    return [outcomes[index] for index in range(len(photos))]


def _detect_images(detector: Detector, images: list[np.ndarray], max_side: int) -> list[list[Face]]:
    """Detect on copies shrunk to ``max_side`` (large photos cost much more and gain
    nothing for faces of the sizes we keep), with coordinates mapped back to the photo."""
    factors = [min(1.0, max_side / max(image.shape[:2])) for image in images]
    shrunk = [image if factor == 1.0 else
              cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
              for image, factor in zip(images, factors)]
    found = detector.detect_batch(shrunk)
    return [[_rescale(face, factor) for face in faces] for faces, factor in zip(found, factors)]


def _rescale(face: Face, factor: float) -> Face:
    if factor == 1.0:
        return face
    # Box edges scale directly; landmarks are pixel centres, half a pixel inside the edge.
    x1, y1, x2, y2 = face.box
    return Face(box=(x1 / factor, y1 / factor, x2 / factor, y2 / factor),
                landmarks=((face.landmarks + 0.5) / factor - 0.5).astype(np.float32), score=face.score)


def _outcome(detector: Detector, image: np.ndarray, faces: list[Face], params: DetectParams) -> dict:
    """The cacheable result for one decoded photo: its size and faces, or a reject reason."""
    height, width = image.shape[:2]
    # A face whose eyes or mouth lie outside the photo is cut by its edge: no aligned crop
    # of it is usable, and in a portrait it is someone beside the subject.
    faces = [face for face in faces if face.score >= params.min_score and _landmarks_inside(face, width, height)]
    whole_image = False
    if not faces and params.whole_image_fallback:
        box = np.array([[0, 0, width, height]], np.float32)
        landmarks, scores = detector.landmarks_in_boxes(image, box)
        if scores[0] >= params.thresholds[2]:
            faces, whole_image = [Face(tuple(box[0].tolist()), landmarks[0], float(scores[0]))], True
        else:
            return {"reject": f"no face found: none detected, and the whole image is not a face "
                              f"(landmarker probability {scores[0]:.2f} < {params.thresholds[2]})"}
    if not faces:
        return {"reject": f"no face found: none with score >= {params.min_score} and landmarks inside the photo"}
    return {"width": width, "height": height, "whole_image": whole_image,
            "faces": [{"box": [float(v) for v in face.box], "landmarks": face.landmarks.tolist(),
                       "score": face.score} for face in faces]}


def _landmarks_inside(face: Face, width: int, height: int) -> bool:
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    return bool((x >= 0).all() and (x <= width - 1).all() and (y >= 0).all() and (y <= height - 1).all())


# --- main process ------------------------------------------------------------------------

def _photo_rows(photo: PhotoFile, outcome: dict, rule: str) -> list[dict]:
    """Manifest rows of one photo: every face, most confident first, the subject marked."""
    width, height = outcome["width"], outcome["height"]
    faces = sorted((Face(tuple(f["box"]), np.asarray(f["landmarks"], np.float32), f["score"])
                    for f in outcome["faces"]), key=lambda face: -face.score)
    subject = choose_subject(faces, width, height, rule)
    rows = []
    for index, face in enumerate(faces):
        x1, y1, x2, y2 = face.box
        row = {"path": photo.path, "identity": photo.identity, "face": index, "subject": index == subject,
               "faces": len(faces), "width": width, "height": height, "score": face.score,
               # Boxes of faces cut by the photo's edge are kept inside the photo.
               "x1": max(0.0, x1), "y1": max(0.0, y1), "x2": min(float(width), x2),
               "y2": min(float(height), y2), "whole_image": outcome["whole_image"]}
        row.update(zip(LANDMARK_COLUMNS, face.landmarks.reshape(-1).tolist()))
        rows.append(row)
    return rows


def _batches(photos: Iterable[PhotoFile], size: int) -> Iterator[list[PhotoFile]]:
    batch: list[PhotoFile] = []
    for photo in photos:
        batch.append(photo)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_photos(source: str | Path, params: DetectParams, compute: ComputeParams) -> DetectionResult:
    """Detect every face in every photo of ``source`` (a folder of identity folders or a
    CSV/parquet list) on the ``compute`` engine's workers; rows come back sorted by path.

    Photos whose content already has a cached result under the same detector settings are
    not decoded again; the workers start only if some photo needs detecting. The main
    process reads the cache and writes it, so it holds the same rows whichever engine ran.
    """
    started = time.perf_counter()
    rows: list[dict] = []
    rejected: list[dict] = []
    cache = ResultCache(params.cache, detection_fingerprint(params)) if params.cache else None
    cached = 0

    def record(photo: PhotoFile, outcome: dict) -> None:
        if "reject" in outcome:
            rejected.append({"path": photo.path, "identity": photo.identity, "reason": outcome["reject"]})
        else:
            rows.extend(_photo_rows(photo, outcome, params.subject_rule))

    def uncached(progress: tqdm) -> Iterator[list[tuple[PhotoFile, str | None]]]:
        """Batches of photos without a cached result; cached ones are recorded on the way."""
        nonlocal cached
        waiting: list[tuple[PhotoFile, str | None]] = []
        for batch in _batches(iter_photos(source), params.batch_size):
            for photo in batch:
                if photo.reject_reason:
                    record(photo, {"reject": photo.reject_reason})
            batch = [photo for photo in batch if not photo.reject_reason]
            digests = cache.digests(photo.location for photo in batch) if cache else [None] * len(batch)
            known = cache.get_many(digests) if cache else {}
            for photo, digest in zip(batch, digests):
                if digest in known:
                    record(photo, known[digest])
                    cached += 1
                    progress.update()
                else:
                    waiting.append((photo, digest))
            while len(waiting) >= params.batch_size:
                yield waiting[:params.batch_size]
                waiting = waiting[params.batch_size:]
        if waiting:
            yield waiting

    log.info("detecting faces under %s with %s on the %s engine (%d workers)", source, params.backend,
             compute.engine, compute.workers)
    with tqdm(desc=f"detect {Path(source).name}", unit="img", mininterval=5) as progress:
        batches = uncached(progress)
        first = next(batches, None)
        if first is not None:
            with compute_engine(compute) as engine:
                jobs = (batch for batch in chain([first], batches))
                task = partial(_detect_photo_batch, params)
                for batch, outcomes in bounded_map(engine.executor, task, jobs, 2 * engine.workers):
                    for (photo, _), outcome in zip(batch, outcomes):
                        record(photo, outcome)
                    if cache:
                        cache.put_many({digest: outcome for (_, digest), outcome in zip(batch, outcomes) if digest})
                    progress.update(len(batch))
    if cache:
        cache.close()
    result = DetectionResult(
        manifest=manifest_frame(rows),
        rejects=pd.DataFrame(rejected, columns=REJECT_COLUMNS).sort_values("path", ignore_index=True),
        seconds=time.perf_counter() - started, cached=cached,
    )
    log.info("accepted %d photos (%d faces), rejected %d, %d from the cache, in %.0f s",
             result.manifest["subject"].sum(), len(result.manifest), len(result.rejects), cached, result.seconds)
    if result.manifest.empty:
        log.warning("no face in any photo of %s: all %d are in the rejects with their reasons", source,
                    len(result.rejects))
    return result
