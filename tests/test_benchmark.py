"""The benchmark's GPU path: CUDA-event timings in each precision (run with -m gpu)."""

from __future__ import annotations

import pytest
import torch

from facerec.benchmarking.timing import cuda_timings
from facerec.models.backbones import build_backbone


@pytest.mark.gpu
def test_gpu_figures_are_timed_with_cuda_events_in_each_precision():
    if not torch.cuda.is_available():
        pytest.fail("the gpu tests need a CUDA GPU: run them with -m gpu on a GPU machine")
    figures = cuda_timings(build_backbone("iresnet18").eval(), warmup_runs=3, timed_runs=20, batch_sizes=[1, 32])
    for precision in ("fp32", "fp16"):
        assert figures[f"cuda_{precision}_latency_ms"] > 0
        # The best batch size is at least about as fast as batch 1 (the latency's rate).
        assert figures[f"cuda_{precision}_throughput_fps"] >= 0.8 * 1000 / figures[f"cuda_{precision}_latency_ms"]
    assert figures["cuda_device"]
