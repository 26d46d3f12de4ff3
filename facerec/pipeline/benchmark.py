"""Stage benchmark: latency, throughput, size, GFLOPs and Mparams of one model on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from facerec.benchmarking.timing import benchmark_model
from facerec.config import BenchmarkParams
from facerec.models.checkpoints import load_checkpoint
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, print_record, section, write_metrics


def benchmark(checkpoint: Path, arch: str | None, params: BenchmarkParams) -> dict:
    """The figures of one checkpoint (ours, or an upstream one with ``arch``), in torch and onnxruntime."""
    torch.set_num_threads(params.num_threads)
    model, contents = load_checkpoint(checkpoint, arch)
    classifier = sum(tensor.numel() for tensor in contents.extras.values())
    return benchmark_model(model, checkpoint, classifier, params.warmup_runs, params.timed_runs,
                           params.throughput_batch_sizes)


def command(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
            metrics: Annotated[Optional[Path], typer.Option(help="JSON of the figures")] = None,
            arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Latency, throughput, size, GFLOPs and Mparams of one model on this machine."""
    result = benchmark(checkpoint, arch, section(params, "benchmark", BenchmarkParams))
    write_metrics(metrics, result)
    print_record(result)
