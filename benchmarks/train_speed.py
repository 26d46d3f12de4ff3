"""Training-step throughput next to this machine's dense matmul rate and a plain reference step.

For each backbone at the given batch size, samples/s of one full step (forward, ArcFace
loss, backward, optimiser) in several ways, all in one run:

- ``reference``: the eager model in the default memory format, bf16 autocast where the
  CPU has native bf16 (else fp32), a standard (per-parameter loop) SGD step — what a plain
  training script does;
- ``ours_fp32`` and, where bf16 is native, ``ours_bf16``: facerec's step itself
  (``facerec.training.loop``'s learner: channels_last, fused SGD without decay on norms,
  Partial FC at sample rate 1, the lr schedule); with ``--compile`` also ``ours_compiled``
  (the same with ``train.compile``: the backbone under ``torch.compile``, in the faster of the
  two precisions). Without native bf16 (AVX2-only CPUs) bf16 is emulated about 10× slower
  than fp32, so it is not timed there; ``--precision fp32`` times every variant in fp32 on any CPU;
- ``ours_frozen``: our step while ``train.finetune.frozen_epochs`` hold the backbone (its
  forward without a graph, the head alone learns), for reference: not counted in the speed-up;
- ``ours_fp32_returning_memory``: ``ours_fp32`` with glibc's allocator as the reference has
  it, handing every freed activation back to the kernel: what ``train_model``'s
  ``facerec.runtime.memory.kept_freed_memory`` is worth.

The variants' steps are interleaved (one step of each in turn, ``--steps`` rounds after two
warm-up steps each) and each figure is the median, so that load from other processes on a
shared machine falls on all of them alike. Our steps run as ``train_model`` runs them, within
``kept_freed_memory``; each round leaves it for the reference (whose steps would otherwise
reuse our kept memory) and so starts with one untimed step that takes that memory again.

A compiled step's compilation is timed apart: ``compile_seconds`` (its first step less a
compiled step, with torch's on-disk caches as they are: a rerun on the same machine compiles
from cache in seconds), and
``compiled_speedup_amortised`` spreads it over a run of ``--run-steps`` steps (two tune epochs of
64-face batches ≈ 30 steps).

Beside them, torch's dense matmul rate (2048² fp32 and bf16, same threads; bf16 measured
even where it is emulated) and each step's fraction of it: model FLOPs per step (3 × 2 ×
MACs × batch: forward plus a backward of about twice its cost) divided by the step time and
the matmul rate of the step's precision.

    python benchmarks/train_speed.py --archs sface --compile --precision fp32 --out benchmarks/results/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerec.benchmarking.complexity import complexity
from facerec.config import TrainParams
from facerec.models.backbones import INPUT_SHAPE, build_backbone
from facerec.models.heads import ArcFaceHead
from facerec.runtime.hardware import use_bf16
from facerec.runtime.memory import kept_freed_memory
from facerec.training.loop import _build_learner  # the training loop's own step, not a copy of it

CLASSES = 1000
WARMUP_STEPS = 2


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


def embedding_size(arch: str) -> int:
    with torch.no_grad():
        return build_backbone(arch).eval()(torch.zeros(2, *INPUT_SHAPE)).shape[1]


def reference_step(arch: str, batch_size: int, bf16: bool) -> Callable[[], None]:
    """A plain training script's step: eager, default memory format, per-parameter SGD."""
    torch.manual_seed(0)
    model = build_backbone(arch).train()
    head = ArcFaceHead(embedding_size(arch), CLASSES, scale=64.0, margin=0.5)
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=0.1, momentum=0.9,
                                weight_decay=5e-4, foreach=False)
    images = torch.randn(batch_size, *INPUT_SHAPE)
    labels = torch.randint(0, CLASSES, (batch_size,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(images)
        loss = F.cross_entropy(head(embeddings.float(), labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def our_step(arch: str, batch_size: int, bf16: bool, compiled: bool, frozen: bool) -> Callable[[], None]:
    """facerec's training step (``_Learner.step``) as ``train_model`` builds it for these settings."""
    torch.manual_seed(0)
    params = TrainParams(model_name="bench", backbone=arch, embedding_size=embedding_size(arch), epochs=1,
                         head={"type": "arcface", "scale": 64.0, "margin": 0.5}, lr=0.1, warmup_epochs=0.0,
                         precision="bf16" if bf16 else "fp32", compile=compiled, channels_last=True,
                         finetune={"frozen_epochs": 1.0 if frozen else 0.0})
    # A long epoch: the schedule (and a frozen backbone) stays as it starts for every timed step.
    learner = _build_learner(params, CLASSES, 10_000, torch.device("cpu"), 0, 1, None, None)
    images = torch.randn(batch_size, *INPUT_SHAPE).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, CLASSES, (batch_size,))

    def step() -> None:
        learner.step(images, labels)

    return step


def timed(step: Callable[[], None]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["sface", "mobilefacenet", "iresnet18"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each variant, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd step")
    parser.add_argument("--run-steps", type=int, default=30, help="a run's steps, over which compiling is amortised")
    parser.add_argument("--precision", choices=["auto", "fp32"], default="auto",
                        help="auto: bf16 where the CPU has it natively (as train.precision auto); fp32: every step")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bf16_steps = use_bf16("auto") and args.precision == "auto"
    # Both rates on every machine: without native bf16 the bf16 rate shows the emulation's cost.
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    report = {"machine": _cpu_name(), "native_bf16": use_bf16("auto"), "precision": args.precision,
              "threads": args.threads,
              "batch_size": args.batch_size, "timed_steps": args.steps, "run_steps": args.run_steps,
              "load_average_at_start": os.getloadavg()[0],
              "matmul_gflops": {k: v / 1e9 for k, v in rates.items()}, "models": {}}
    print(f"matmul fp32 {rates['fp32'] / 1e9:.1f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.1f} GFLOP/s", flush=True)
    for arch in args.archs:
        flops_per_sample = 3 * 2 * complexity(arch).gflops * 1e9
        steps = {"reference": reference_step(arch, args.batch_size, bf16_steps),
                 "ours_fp32": our_step(arch, args.batch_size, False, False, False)}
        if bf16_steps:
            steps["ours_bf16"] = our_step(arch, args.batch_size, True, False, False)
        if args.compile:
            steps["ours_compiled"] = our_step(arch, args.batch_size, bf16_steps, True, False)
        steps["ours_frozen"] = our_step(arch, args.batch_size, bf16_steps, False, True)
        # Our fp32 step where glibc hands freed memory back (as the reference's is), for comparison.
        steps["ours_fp32_returning_memory"] = steps["ours_fp32"]
        ours = [variant for variant in steps if variant.startswith("ours") and variant != "ours_fp32_returning_memory"]
        first = {}
        with kept_freed_memory():
            for variant in ours:
                first[variant] = timed(steps[variant])
                for _ in range(WARMUP_STEPS - 1):
                    steps[variant]()
        for _ in range(WARMUP_STEPS):
            steps["reference"]()
        times: dict[str, list[float]] = {variant: [] for variant in steps}
        for _ in range(args.steps):
            for variant in ("reference", "ours_fp32_returning_memory"):
                times[variant].append(timed(steps[variant]))
            with kept_freed_memory():  # as train_model runs; leaving gave the memory back, so one step to take it
                steps["ours_fp32"]()
                for variant in ours:
                    times[variant].append(timed(steps[variant]))
        figures: dict = {}
        for variant in steps:
            seconds = statistics.median(times[variant])
            bf16 = variant == "ours_bf16" or (variant in ("reference", "ours_compiled", "ours_frozen") and bf16_steps)
            # A frozen step runs the backbone forward only: a third of a step's FLOPs.
            flops = flops_per_sample / 3 if variant == "ours_frozen" else flops_per_sample
            figures[variant] = {"samples_per_second": args.batch_size / seconds,
                                "fraction_of_matmul_rate": args.batch_size * flops / seconds / rates[
                                    "bf16" if bf16 else "fp32"]}
            print(f"{arch:14s} {variant:14s} {args.batch_size / seconds:7.2f} samples/s  "
                  f"{figures[variant]['fraction_of_matmul_rate']:.1%} of the matmul rate", flush=True)
        reference = figures["reference"]["samples_per_second"]
        counted = [variant for variant in ours if variant != "ours_frozen"]
        figures["speedup_vs_reference"] = max(figures[variant]["samples_per_second"] for variant in counted) / reference
        if args.compile:
            step_seconds = statistics.median(times["ours_compiled"])
            compile_seconds = max(0.0, first["ours_compiled"] - step_seconds)
            amortised = args.run_steps * args.batch_size / (compile_seconds + args.run_steps * step_seconds)
            figures["compile_seconds"] = compile_seconds
            figures["compiled_speedup_amortised"] = amortised / reference
            print(f"{arch:14s} compiling took {compile_seconds:.0f} s; over {args.run_steps} steps "
                  f"{amortised:.2f} samples/s", flush=True)
        figures["speedup_frozen_vs_reference"] = figures["ours_frozen"]["samples_per_second"] / reference
        report["models"][arch] = figures
    report["load_average_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


def _cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
