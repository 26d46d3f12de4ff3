"""How the evaluate stage embeds a checkpoint's faces, against torch, in one run: real
aligned faces of an evaluation set through our trained model, with flip.

- ``torch``: ``embed_crops`` in torch (eager, channels_last, fp32) on ``--threads`` threads;
- ``onnxruntime_1_call_x_N_threads`` (what ``evaluate.runtime: onnxruntime`` does): the
  exported model in onnxruntime, one batch at a time on ``--threads`` intra-op threads;
- ``onnxruntime_N_calls_x_1_thread``: ``--threads`` batches side by side (Python threads:
  onnxruntime releases the GIL), one intra-op thread each.

The variants alternate for ``--repeats`` rounds and each keeps its best time (the export and
the parity check, which ``embed_crops`` does before its first batch, are timed once apart as
``onnxruntime_setup_seconds``: included in that variant's time). Also the
largest difference of each from torch's L2-normalised embeddings.

    python benchmarks/embedding_speed.py --evalset data/evalsets/lfw \
        --checkpoint models/facerec_sface_adapted/model.pt --out benchmarks/results/embedding_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from facerec.data.aligned import normalise
from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.sets import read_evaluation_set
from facerec.models.checkpoints import load_pretrained
from facerec.models.export import onnxruntime_forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evalset", type=Path, default=Path("data/evalsets/lfw"))
    parser.add_argument("--checkpoint", type=Path, default=Path("models/facerec_sface_adapted/model.pt"))
    parser.add_argument("--crops", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedding_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(None, args.checkpoint)
    crops = read_evaluation_set(args.evalset).crops()[:args.crops]
    started = time.perf_counter()
    onnxruntime_forward(model, normalise(crops[:args.batch_size]), threads=args.threads)
    setup_seconds = time.perf_counter() - started

    single_threaded = onnxruntime_forward(model, normalise(crops[:args.batch_size]), threads=1)

    def side_by_side(start: int) -> np.ndarray:
        batch = normalise(crops[start:start + args.batch_size])
        embedding = torch.from_numpy(single_threaded(batch) + single_threaded(batch.flip(-1)))
        return torch.nn.functional.normalize(embedding).numpy()

    def many_calls_one_thread() -> np.ndarray:
        with ThreadPoolExecutor(args.threads) as pool:
            return np.concatenate(list(pool.map(side_by_side, range(0, len(crops), args.batch_size))))

    variants = {
        "torch": lambda: embed_crops(model, crops, args.batch_size, True),
        f"onnxruntime_1_call_x_{args.threads}_threads": lambda: embed_crops(
            model, crops, args.batch_size, True, runtime="onnxruntime", num_threads=args.threads),
        f"onnxruntime_{args.threads}_calls_x_1_thread": many_calls_one_thread,
    }
    best = dict.fromkeys(variants, float("inf"))
    outputs: dict[str, np.ndarray] = {}
    load = os.getloadavg()[0]
    for _ in range(args.repeats):
        for name, run in variants.items():
            started = time.perf_counter()
            outputs[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    report = {
        "machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_at_start": load, "threads": args.threads, "crops": len(crops), "flip": True,
        "checkpoint": str(args.checkpoint), "onnxruntime_setup_seconds": round(setup_seconds, 2),
        "crops_per_second": {name: round(len(crops) / seconds, 1) for name, seconds in best.items()},
        "speedup_vs_torch": {name: round(best["torch"] / seconds, 2) for name, seconds in best.items()},
        "max_abs_difference_vs_torch": {name: float(np.abs(values - outputs["torch"]).max())
                                        for name, values in outputs.items()},
    }
    print(json.dumps(report, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
