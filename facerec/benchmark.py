"""Inference cost of an embedding model on this machine: latency, throughput, size, GFLOPs, Mparams.

Method: batch-1 latency is the median (and 90th percentile) of ``timed_runs`` forward
passes after ``warmup_runs`` untimed ones; throughput is images/s at the best of the
given batch sizes; GFLOPs and Mparams follow the field's convention (``facerec.complexity``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from facerec.backbones import INPUT_SHAPE
from facerec.complexity import complexity
from facerec.hardware import use_bf16

log = logging.getLogger(__name__)


def _timed(model: nn.Module, batch: torch.Tensor, runs: int, precision: str) -> np.ndarray:
    batch = batch.contiguous(memory_format=torch.channels_last)
    times = np.empty(runs)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        for index in range(runs):
            started = time.perf_counter()
            model(batch)
            times[index] = time.perf_counter() - started
    return times


def measure_latency(model: nn.Module, warmup_runs: int, timed_runs: int, precision: str = "fp32") -> dict:
    """Batch-1 latency in milliseconds: median and 90th percentile after warm-up."""
    batch = torch.randn(1, *INPUT_SHAPE)
    _timed(model, batch, warmup_runs, precision)
    times = _timed(model, batch, timed_runs, precision) * 1000
    return {"latency_ms": float(np.median(times)), "latency_p90_ms": float(np.percentile(times, 90))}


def measure_throughput(model: nn.Module, batch_sizes: list[int], precision: str = "fp32",
                       runs: int = 5) -> dict:
    """Images per second at the best batch size (median of ``runs`` timed batches each)."""
    best = (0.0, 0)
    for batch_size in batch_sizes:
        batch = torch.randn(batch_size, *INPUT_SHAPE)
        _timed(model, batch, 1, precision)
        rate = batch_size / float(np.median(_timed(model, batch, runs, precision)))
        log.info("batch %d: %.1f images/s (%s)", batch_size, rate, precision)
        best = max(best, (rate, batch_size))
    return {"throughput_fps": best[0], "throughput_batch_size": best[1]}


def benchmark_model(model: nn.Module, checkpoint: Path, classifier_parameters: int,
                    warmup_runs: int, timed_runs: int, batch_sizes: list[int]) -> dict:
    """All figures of the benchmark stage for one model: fp32, and bf16 autocast where native.

    The model runs in channels_last memory format, as facerec's embedding step runs it.
    """
    model.eval()
    cost = complexity(model, classifier_parameters)
    record = {
        "size_mb": checkpoint.stat().st_size / 2**20,
        "gflops": cost.gflops,
        "mparams": cost.mparams,
        "threads": torch.get_num_threads(),
    }
    model.to(memory_format=torch.channels_last)
    record.update(measure_latency(model, warmup_runs, timed_runs))
    record.update(measure_throughput(model, batch_sizes))
    # Without native bf16 kernels, bf16 is emulated ~10x slower than fp32: not worth timing.
    record["bf16_native"] = use_bf16("auto")
    if record["bf16_native"]:
        bf16 = measure_latency(model, warmup_runs, timed_runs, "bf16")
        bf16.update(measure_throughput(model, batch_sizes, "bf16"))
        record.update({f"bf16_{key}": value for key, value in bf16.items()})
    return record
