"""Batched embedding extraction with insightface's flip test-time augmentation, in torch or
in onnxruntime."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facerec.data.aligned import normalise
from facerec.runtime.hardware import use_bf16
from facerec.runtime.memory import kept_freed_memory

Runtime = Literal["torch", "onnxruntime"]


def _torch_forward(model: nn.Module, precision: str) -> Callable[[torch.Tensor], np.ndarray]:
    device = next(model.parameters()).device
    # channels_last: oneDNN's CPU convolutions run ~1.5x faster on NHWC (measured on MobileFaceNet).
    model.eval().to(memory_format=torch.channels_last)
    bf16 = use_bf16(precision) and device.type == "cpu"

    def forward(batch: torch.Tensor) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(batch.to(device).contiguous(memory_format=torch.channels_last)).float().cpu().numpy()

    return forward


@torch.inference_mode()
@kept_freed_memory()
def forward_crops(model: nn.Module, crops: torch.Tensor, batch_size: int, flip: bool = False,
                  precision: str = "fp32", runtime: Runtime = "torch", num_threads: int = 1) -> np.ndarray:
    """The model's raw float32 embeddings N×D of uint8 RGB crops N×3×112×112, before any
    normalisation (with ``flip``, plus the mirrored crop's).

    In torch it runs on the model's device (bf16 autocast applies on CPUs) on torch's
    threads, with glibc keeping the freed activations for the next batch
    (``facerec.runtime.memory``): fp32 on our SFace model then runs 3.1x as fast as under
    glibc's defaults at batch 128, and 1.65x onnxruntime (2.8x with its export and check;
    benchmarks/embedding_speed.py).
    ``runtime="onnxruntime"`` exports the model, checks it against torch on the first batch
    (``facerec.models.export.onnxruntime_forward``) and runs it on the CPU on ``num_threads``
    threads, fp32 only.
    """
    if not len(crops):
        return np.zeros((0, 0), np.float32)
    if runtime == "onnxruntime":
        if use_bf16(precision):
            raise ValueError("onnxruntime embeds in fp32: set precision fp32 or runtime torch")
        from facerec.models.export import onnxruntime_forward

        forward = onnxruntime_forward(model, normalise(crops[:batch_size]), threads=num_threads)
    else:
        forward = _torch_forward(model, precision)
    outputs = []
    for start in tqdm(range(0, len(crops), batch_size), desc="embed", unit="batch", mininterval=10):
        batch = normalise(crops[start:start + batch_size])
        embedding = forward(batch)
        outputs.append(embedding + forward(batch.flip(-1)) if flip else embedding)
    return np.concatenate(outputs)


def embed_crops(model: nn.Module, crops: torch.Tensor, batch_size: int, flip: bool,
                precision: str = "fp32", runtime: Runtime = "torch", num_threads: int = 1) -> np.ndarray:
    """L2-normalised float32 embeddings N×D of uint8 RGB crops N×3×112×112 (``forward_crops``):
    with ``flip`` the embedding of the mirrored crop is added before normalising."""
    embeddings = forward_crops(model, crops, batch_size, flip, precision, runtime, num_threads)
    return nn.functional.normalize(torch.from_numpy(embeddings)).numpy() if len(embeddings) else embeddings
