"""Detect + align throughput on LFW photos: our pipeline next to its baselines, in one run.

Three ways to turn the same 250x250 LFW photos into aligned 112x112 crops on this machine:

- ``naive``: one photo at a time through our MTCNN cascade, one process (torch's threads);
- ``facenet_batched``: facenet-pytorch's own MTCNN.detect on batches of 32, one process;
- ``pipeline``: ``detect_photos`` + ``align_manifest`` as the DVC stages run them (worker
  processes, batches, no cache), including the worker start-up.

Each baseline aligns with the same function as the pipeline. Writes a JSON report.

    python benchmarks/detect_speed.py --photos 1000 --out benchmarks/results/detect_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from facerec.config import AlignParams, ComputeParams, DetectParams
from facerec.data.images import load_rgb
from facerec.faces.alignment import align_face, align_manifest
from facerec.faces.detection import detect_photos

LFW_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"


def _largest_landmarks(faces: list) -> np.ndarray | None:
    faces = [face for face in faces if face[1] >= 0.9]
    return max(faces, key=lambda face: face[2])[0] if faces else None


def naive(paths: list[Path]) -> float:
    from facerec.faces.detectors.mtcnn import MtcnnDetector

    detector = MtcnnDetector(40, (0.6, 0.7, 0.7))
    started = time.perf_counter()
    for path in paths:
        image = load_rgb(path, 40_000_000, 32)
        found = [(f.landmarks, f.score, f.area) for f in detector.detect(image)]
        landmarks = _largest_landmarks(found)
        if landmarks is not None:
            align_face(image, landmarks)
    return len(paths) / (time.perf_counter() - started)


def facenet_batched(paths: list[Path], batch_size: int = 32) -> float:
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(min_face_size=40, keep_all=True, device="cpu")
    started = time.perf_counter()
    for start in range(0, len(paths), batch_size):
        images = [load_rgb(path, 40_000_000, 32) for path in paths[start:start + batch_size]]
        boxes, scores, points = mtcnn.detect(images, landmarks=True)
        for image, box, score, point in zip(images, boxes, scores, points):
            if box is None:
                continue
            areas = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
            landmarks = _largest_landmarks(list(zip(point, score, areas)))
            if landmarks is not None:
                align_face(image, landmarks)
    return len(paths) / (time.perf_counter() - started)


def pipeline(folder: Path, count: int, workers: int) -> tuple[float, float, float]:
    params = DetectParams(cache=None)
    started = time.perf_counter()
    detected = detect_photos(folder, params, ComputeParams(workers=workers))
    middle = time.perf_counter()
    align_manifest(folder, detected.manifest, AlignParams(), params)
    ended = time.perf_counter()
    return count / (ended - started), count / (middle - started), count / (ended - middle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/detect_speed.json"))
    args = parser.parse_args()
    paths = sorted(LFW_IMAGES.glob("*/*.jpg"))[:: max(1, 13233 // args.photos)][:args.photos]
    with tempfile.TemporaryDirectory() as folder:
        for path in paths:  # the pipeline reads a folder of identity folders
            (Path(folder) / path.parent.name).mkdir(exist_ok=True)
            shutil.copy2(path, Path(folder) / path.parent.name / path.name)
        torch.set_num_threads(os.cpu_count())
        report = {"photos": len(paths), "cpu_count": os.cpu_count(),
                  "machine": platform.processor() or platform.machine(),
                  "torch_threads": torch.get_num_threads()}
        report["naive_images_per_second"] = round(naive(paths[:200]), 1)
        report["facenet_batched_images_per_second"] = round(facenet_batched(paths), 1)
        total, detect, align = pipeline(Path(folder), len(paths), args.workers)
        report.update(pipeline_images_per_second=round(total, 1), pipeline_detect_images_per_second=round(detect, 1),
                      pipeline_align_images_per_second=round(align, 1), pipeline_workers=args.workers)
    report["speedup_vs_facenet_batched"] = round(report["pipeline_images_per_second"]
                                                 / report["facenet_batched_images_per_second"], 2)
    report["speedup_vs_naive"] = round(report["pipeline_images_per_second"] / report["naive_images_per_second"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
