"""Training-step throughput next to this machine's dense matmul rate and a plain reference step.

For each backbone at the given batch size, samples/s of one full step (forward, ArcFace
loss, backward, optimiser) in three ways, all in one run:

- ``reference``: the eager model in the default memory format, bf16 autocast where the
  CPU has native bf16 (else fp32), a standard (per-parameter loop) SGD step — what a plain
  training script does;
- ``ours_fp32`` and, where bf16 is native, ``ours_bf16``: facerec's step (channels_last,
  foreach SGD without decay on norms); with ``--compile`` also ``ours_compiled`` (the same
  with the backbone under ``torch.compile``, in the faster of the two precisions). Without native bf16
  (AVX2-only CPUs) bf16 is
  emulated about 10× slower than fp32, so it is not timed there.

Beside them, torch's dense matmul rate (2048² fp32 and bf16, same threads; bf16 measured
even where it is emulated) and each step's
fraction of it: model FLOPs per step (3 × 2 × MACs × batch: forward plus a backward of about
twice its cost) divided by the step time and the matmul rate of the step's precision.

    python benchmarks/train_speed.py --out benchmarks/results/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerec.benchmarking.complexity import complexity
from facerec.config import TrainParams
from facerec.models.backbones import INPUT_SHAPE, build_backbone
from facerec.models.heads import ArcFaceHead
from facerec.runtime.hardware import use_bf16
from facerec.training.loop import build_optimizer

CLASSES = 1000


def matmul_rate(dtype: torch.dtype, size: int = 2048, runs: int = 5) -> float:
    """Dense matmul FLOP/s (2·n³ per product), median of ``runs``."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * size**3 / float(np.median(times))


def step_rate(arch: str, batch_size: int, variant: str, steps: int) -> float:
    """Samples/s of ``steps`` training steps after two warm-up steps."""
    torch.manual_seed(0)
    model = build_backbone(arch).train()
    head = ArcFaceHead(512, CLASSES, scale=64.0, margin=0.5)
    bf16 = variant == "ours_bf16" or (variant in ("reference", "ours_compiled") and use_bf16("auto"))
    if variant == "reference":
        optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9,
                                    weight_decay=5e-4, foreach=False)
    else:
        model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(TrainParams(model_name="bench", epochs=1), [model, head])
    images = torch.randn(batch_size, *INPUT_SHAPE)
    if variant != "reference":
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, CLASSES, (batch_size,))
    forward = torch.compile(model) if variant == "ours_compiled" else model

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeddings = forward(images)
        loss = F.cross_entropy(head(embeddings.float(), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["mobilefacenet", "iresnet18", "iresnet50"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd step")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    native_bf16 = use_bf16("auto")
    # Both rates on every machine: without native bf16 the bf16 rate shows the emulation's cost.
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    report = {"machine": platform.processor() or platform.machine(), "native_bf16": native_bf16,
              "threads": args.threads,
              "batch_size": args.batch_size, "matmul_gflops": {k: v / 1e9 for k, v in rates.items()}, "models": {}}
    for arch in args.archs:
        flops_per_sample = 3 * 2 * complexity(arch).gflops * 1e9
        figures = {}
        variants = ["reference", "ours_fp32", "ours_bf16"] if native_bf16 else ["reference", "ours_fp32"]
        for variant in variants + (["ours_compiled"] if args.compile else []):
            samples = step_rate(arch, args.batch_size, variant, args.steps)
            bf16 = variant == "ours_bf16" or (variant in ("reference", "ours_compiled") and native_bf16)
            rate = rates["bf16" if bf16 else "fp32"]
            figures[variant] = {"samples_per_second": samples,
                                "fraction_of_matmul_rate": samples * flops_per_sample / rate}
            print(f"{arch:14s} {variant:10s} {samples:7.2f} samples/s  "
                  f"{figures[variant]['fraction_of_matmul_rate']:.1%} of the matmul rate", flush=True)
        best = max(value["samples_per_second"] for key, value in figures.items() if key.startswith("ours"))
        figures["speedup_vs_reference"] = best / figures["reference"]["samples_per_second"]
        report["models"][arch] = figures
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
