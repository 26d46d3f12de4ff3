"""Embedding speed in one process or several, in one run: the peers on real LFW faces and a
checkpoint backbone on aligned crops, 1 process × N threads against N processes × 1 thread.

- peers (dlib, FaceNet, SFace): ``embed_evaluation_faces`` as the evaluate stages run it,
  on the subjects of the first ``--photos`` LFW photos (detected first): in this process
  (compute.workers 1) or on the local engine's worker processes, whose start-up (spawn,
  imports, building the peer) is included; ``startup_seconds`` is that cost alone (8 faces);
- checkpoints: ``embed_crops`` of the default backbone (sface, random weights: the speed
  does not depend on them) on ``--crops`` crops with flip, in this process or in chunks of
  ``evaluate.batch_size`` crops on worker processes (start-up included).

Each configuration runs ``--repeats`` times, alternating, and the best time is kept (the
machine is shared); ``cores`` is the CPU time it got (this process and its workers) over
its wall time: where other work holds the CPU it stays near 1 whatever the configuration.
Also checks that the embeddings agree. Writes a JSON report.

    python benchmarks/engine_speed.py --photos 300 --out benchmarks/results/engine_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facerec.config import ComputeParams, DetectParams
from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.sets import BOX_COLUMNS, EvaluationFaces
from facerec.faces.cache import file_digest
from facerec.faces.detection import detect_photos
from facerec.faces.manifest import LANDMARK_COLUMNS, subjects
from facerec.models.peers.photos import embed_evaluation_faces
from facerec.registry import PEERS

LFW_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw" / "images"
BACKBONE, EMBEDDING_SIZE, BATCH = "sface", 128, 128


def evaluation_faces(photos: int, folder: Path) -> EvaluationFaces:
    """The detected subjects of the first ``photos`` LFW photos (by folder), as a set of faces."""
    for person in sorted(LFW_IMAGES.iterdir()):
        if sum(1 for _ in folder.glob("*/*.jpg")) >= photos:
            break
        (folder / person.name).symlink_to(person)
    faces = subjects(detect_photos(folder, DetectParams(cache=None), ComputeParams()).manifest) if photos else \
        pd.DataFrame(columns=["path", "identity", *BOX_COLUMNS, *LANDMARK_COLUMNS])
    table = faces[["path", "identity", *BOX_COLUMNS, *LANDMARK_COLUMNS]].rename(columns={"path": "source"})
    table.insert(2, "photo_digest", [file_digest(folder / path) for path in table["source"]])
    info = {"name": "lfw_subset", "photos": str(folder), "max_image_pixels": 40_000_000, "min_image_side": 32}
    return EvaluationFaces("identities", table.reset_index(drop=True), pd.DataFrame(), info)


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended workers."""
    return sum(usage.ru_utime + usage.ru_stime for usage in (resource.getrusage(resource.RUSAGE_SELF),
                                                               resource.getrusage(resource.RUSAGE_CHILDREN)))


def timed(run, *args) -> tuple[float, float, np.ndarray]:
    """(wall seconds, cores used, result) of ``run(*args)``."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    result = run(*args)
    seconds = time.perf_counter() - started
    return seconds, (_cpu_seconds() - cpu) / seconds, result


def embed_peer(peer: str, evaluation: EvaluationFaces, workers: int, threads: int) -> np.ndarray:
    torch.set_num_threads(threads)
    return embed_evaluation_faces(peer, evaluation, ComputeParams(workers=workers), threads)


def _backbone(threads: int) -> torch.nn.Module:
    from facerec.models.backbones import build_backbone

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return build_backbone(BACKBONE, embedding_size=EMBEDDING_SIZE)


_model: list[torch.nn.Module] = []


def _embed_chunk(crops: torch.Tensor) -> np.ndarray:
    if not _model:
        _model.append(_backbone(1))
    return embed_crops(_model[0], crops, BATCH, flip=True)


def embed_checkpoint(crops: torch.Tensor, workers: int, threads: int) -> np.ndarray:
    if workers == 1:
        return embed_crops(_backbone(threads), crops, BATCH, flip=True)
    chunks = [crops[start:start + BATCH] for start in range(0, len(crops), BATCH)]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(_embed_chunk, chunks)))


def compare(run, data, n: int, repeats: int) -> tuple[dict, dict]:
    """Best (seconds, cores) of 1 process × n threads ("1x") and n processes × 1 thread ("Nx"),
    run alternately, and the outputs of each."""
    best = {"1x": (np.inf, 0.0), "Nx": (np.inf, 0.0)}
    outputs = {}
    for _ in range(repeats):
        for key, (workers, threads) in (("1x", (1, n)), ("Nx", (n, 1))):
            seconds, cores, outputs[key] = timed(run, data, workers, threads)
            best[key] = min(best[key], (seconds, cores))
    return best, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--crops", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2, help="evaluate.num_threads: N")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--peers", nargs="*", default=sorted(PEERS.names))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/engine_speed.json"))
    args = parser.parse_args()
    n = args.threads
    report: dict = {"cpu_count": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                    "load_average_at_start": os.getloadavg()[0], "threads": n}
    with tempfile.TemporaryDirectory() as folder:
        evaluation = evaluation_faces(args.photos if args.peers else 0, Path(folder))
        faces = len(evaluation.faces)
        report["faces"] = faces
        few = EvaluationFaces(evaluation.kind, evaluation.faces.iloc[:8], evaluation.pairs, evaluation.info)
        for peer in args.peers:
            best, outputs = compare(partial(embed_peer, peer), evaluation, n, args.repeats)
            report[peer] = {
                f"1_process_x_{n}_threads_faces_per_second": round(faces / best["1x"][0], 2),
                f"{n}_processes_x_1_thread_faces_per_second": round(faces / best["Nx"][0], 2),
                "ratio": round(best["1x"][0] / best["Nx"][0], 2),
                "cores": [round(best["1x"][1], 2), round(best["Nx"][1], 2)],
                "startup_seconds": [round(timed(embed_peer, peer, few, 1, n)[0], 1),
                                    round(timed(embed_peer, peer, few, n, 1)[0], 1)],
                "max_abs_difference": float(np.abs(outputs["1x"] - outputs["Nx"]).max())}
            print(peer, json.dumps(report[peer]), flush=True)
    crops = torch.randint(0, 256, (args.crops, 3, 112, 112), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    if args.crops:
        best, outputs = compare(embed_checkpoint, crops, n, args.repeats)
        report[f"checkpoint_{BACKBONE}"] = {
            "crops": args.crops, f"1_process_x_{n}_threads_crops_per_second": round(args.crops / best["1x"][0], 1),
            f"{n}_processes_x_1_thread_crops_per_second": round(args.crops / best["Nx"][0], 1),
            "ratio": round(best["1x"][0] / best["Nx"][0], 2), "cores": [round(best["1x"][1], 2),
                                                                      round(best["Nx"][1], 2)],
            "max_abs_difference": float(np.abs(outputs["1x"] - outputs["Nx"]).max())}
    print(json.dumps(report, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
