"""How the evaluate stage embeds a checkpoint's faces, in one run: real aligned faces of an
evaluation set through our trained model, with flip, in batches of ``--batch-size``.

- ``torch`` (``evaluate.runtime: torch``, the default): ``embed_crops`` in torch (eager,
  channels_last, fp32) on ``--threads`` threads, glibc keeping the freed activations
  (``facerec.runtime.memory.kept_freed_memory``);
- ``torch_glibc_defaults``: the same under glibc's default allocator settings, which unmap
  every freed block over 32 MB (how the stage embedded before): each batch faults its
  activations' pages in again;
- ``onnxruntime`` (``evaluate.runtime: onnxruntime``): the exported model in onnxruntime, one
  batch at a time on ``--threads`` intra-op threads (its own arena keeps its memory).

The variants alternate for ``--repeats`` rounds and each keeps its best time (onnxruntime's
export and parity check, which ``embed_crops`` does before its first batch, are timed once
apart as ``onnxruntime_setup_seconds``: included in that variant's time). Also the largest
difference of each from torch's L2-normalised embeddings.

    python benchmarks/embedding_speed.py --evalset data/evalsets/lfw \
        --checkpoint models/facerec_sface_adapted/model.pt --out benchmarks/results/embedding_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np
import torch

from facerec.data.aligned import normalise
from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.sets import read_evaluation_set
from facerec.models.checkpoints import load_pretrained
from facerec.models.export import onnxruntime_forward
from facerec.runtime import memory


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

    def glibc_defaults() -> np.ndarray:
        # kept_freed_memory leaves the allocator alone where it finds no glibc: made to find none.
        with patch.object(memory, "_glibc", lambda: None):
            return embed_crops(model, crops, args.batch_size, True)

    variants = {
        "torch": lambda: embed_crops(model, crops, args.batch_size, True),
        "torch_glibc_defaults": glibc_defaults,
        "onnxruntime": lambda: embed_crops(model, crops, args.batch_size, True, runtime="onnxruntime",
                                           num_threads=args.threads),
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
