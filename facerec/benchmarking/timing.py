"""Inference cost of an embedding model on this machine: latency, throughput, size, GFLOPs, Mparams.

Method: batch-1 latency is the median (and 90th percentile) of ``timed_runs`` calls after
``warmup_runs`` untimed ones; throughput is images/s at the best of the given batch sizes
(median of a few timed batches each). A torch model is timed in torch (fp32, and bf16
autocast where the CPU has native bf16: ``bf16_native``) and, exported to ONNX, in onnxruntime; on a GPU
also in fp32, fp16 and bf16 autocast, timed with CUDA events; a peer
(``facerec.models.peers``) is timed through its own runtime, crop included. GFLOPs and Mparams
follow the field's convention (``facerec.benchmarking.complexity``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch import nn

from facerec.benchmarking.complexity import complexity
from facerec.models.backbones import INPUT_SHAPE
from facerec.models.export import exported_session, onnx_max_abs_diff
from facerec.models.peers import Embedder, PhotoFace
from facerec.runtime.hardware import use_bf16
from facerec.runtime.memory import kept_freed_memory

log = logging.getLogger(__name__)

# A call that processes one batch of the given size (inputs are prepared before timing).
BatchCall = Callable[[int], Callable[[], object]]


def time_calls(call: Callable[[], object], runs: int) -> np.ndarray:
    """Wall-clock seconds of ``runs`` successive calls."""
    times = np.empty(runs)
    for index in range(runs):
        started = time.perf_counter()
        call()
        times[index] = time.perf_counter() - started
    return times


def time_cuda_calls(call: Callable[[], object], runs: int) -> np.ndarray:
    """Seconds of ``runs`` successive calls on the GPU, between CUDA events recorded on the
    stream around each call (the host's clock would time only the kernel launches)."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(runs)]
    for start, end in events:
        start.record()
        call()
        end.record()
    torch.cuda.synchronize()
    return np.array([start.elapsed_time(end) / 1000 for start, end in events])


Timer = Callable[[Callable[[], object], int], np.ndarray]


def measure_latency(batch_call: BatchCall, warmup_runs: int, timed_runs: int, timer: Timer = time_calls) -> dict:
    """Batch-1 latency in milliseconds: median and 90th percentile after warm-up."""
    call = batch_call(1)
    timer(call, warmup_runs)
    times = timer(call, timed_runs) * 1000
    return {"latency_ms": float(np.median(times)), "latency_p90_ms": float(np.percentile(times, 90))}


def measure_throughput(batch_call: BatchCall, batch_sizes: Sequence[int], runs: int = 5,
                       timer: Timer = time_calls) -> dict:
    """Images per second at the best batch size (median of ``runs`` timed batches each)."""
    best = (0.0, 0)
    for batch_size in batch_sizes:
        call = batch_call(batch_size)
        call()
        rate = batch_size / float(np.median(timer(call, runs)))
        log.info("batch %d: %.1f images/s", batch_size, rate)
        best = max(best, (rate, batch_size))
    return {"throughput_fps": best[0], "throughput_batch_size": best[1]}


AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _torch_batches(model: nn.Module, precision: str, device: str = "cpu") -> BatchCall:
    def batch_call(batch_size: int) -> Callable[[], object]:
        batch = torch.randn(batch_size, *INPUT_SHAPE, device=device).contiguous(memory_format=torch.channels_last)
        dtype = AUTOCAST[precision]

        def call() -> object:
            with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=dtype is not None):
                return model(batch)
        return call
    return batch_call


def _onnx_batches(session: onnxruntime.InferenceSession) -> BatchCall:
    def batch_call(batch_size: int) -> Callable[[], object]:
        batch = np.random.default_rng(0).standard_normal((batch_size, *INPUT_SHAPE), dtype=np.float32)
        return lambda: session.run(["embeddings"], {"images": batch})
    return batch_call


def _timings(batch_call: BatchCall, warmup_runs: int, timed_runs: int, batch_sizes: Sequence[int],
             prefix: str = "", timer: Timer = time_calls) -> dict:
    figures = {**measure_latency(batch_call, warmup_runs, timed_runs, timer),
               **measure_throughput(batch_call, batch_sizes, timer=timer)}
    return {f"{prefix}{key}": value for key, value in figures.items()}


def benchmark_model(model: nn.Module, checkpoint: Path, classifier_parameters: int,
                    warmup_runs: int, timed_runs: int, batch_sizes: Sequence[int]) -> dict:
    """All figures of the benchmark stage for one torch model: torch fp32 (channels_last, as
    facerec's embedding step runs it), bf16 autocast where native, and onnxruntime."""
    model.eval()
    cost = complexity(model, classifier_parameters)
    record = {"size_mb": checkpoint.stat().st_size / 2**20, "gflops": cost.gflops, "mparams": cost.mparams,
              "threads": torch.get_num_threads()}
    session = exported_session(model, torch.get_num_threads())
    record["onnx_max_abs_diff"] = onnx_max_abs_diff(model, session)
    record.update(_timings(_onnx_batches(session), warmup_runs, timed_runs, batch_sizes, "onnx_"))
    model.to(memory_format=torch.channels_last)
    # Timed as the evaluate stage embeds (facerec.evaluation.embedding): freed activations kept.
    with kept_freed_memory():
        record.update(_timings(_torch_batches(model, "fp32"), warmup_runs, timed_runs, batch_sizes))
        # Without native bf16 kernels (AVX2-only CPUs) bf16 is emulated, over 10x slower than
        # fp32 (timing it took minutes per model): it is timed only where it is native.
        record["bf16_native"] = use_bf16("auto")
        if record["bf16_native"]:
            record.update(_timings(_torch_batches(model, "bf16"), warmup_runs, timed_runs, batch_sizes, "bf16_"))
    if torch.cuda.is_available():
        record.update(cuda_timings(model, warmup_runs, timed_runs, batch_sizes))
    return record


def cuda_timings(model: nn.Module, warmup_runs: int, timed_runs: int, batch_sizes: Sequence[int]) -> dict:
    """``cuda_<precision>_*`` figures of ``model`` on the first GPU in fp32, fp16 and bf16
    autocast (bf16 where the GPU supports it), timed with CUDA events."""
    on_gpu = copy.deepcopy(model).to("cuda")
    precisions = ["fp32", "fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
    figures = {"cuda_device": torch.cuda.get_device_name(0)}
    for precision in precisions:
        figures.update(_timings(_torch_batches(on_gpu, precision, "cuda"), warmup_runs, timed_runs, batch_sizes,
                                f"cuda_{precision}_", timer=time_cuda_calls))
    return figures


def benchmark_embedder(embedder: Embedder, face: PhotoFace, warmup_runs: int, timed_runs: int,
                       batch_sizes: Sequence[int]) -> dict:
    """The benchmark figures of a peer, timed on copies of ``face`` (crop and network).

    Its GFLOPs are unknown (neither dlib nor OpenCV 5's Python API counts them) and are None.
    """
    parameters = embedder.parameter_count()
    record = {"size_mb": sum(path.stat().st_size for path in embedder.weight_files()) / 2**20,
              "gflops": None, "mparams": None if parameters is None else parameters / 1e6,
              "input_size": embedder.input_size}

    def batch_call(batch_size: int) -> Callable[[], object]:
        faces = [face] * batch_size
        return lambda: embedder.embed(faces)
    record.update(_timings(batch_call, warmup_runs, timed_runs, batch_sizes))
    return record
