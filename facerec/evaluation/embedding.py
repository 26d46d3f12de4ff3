"""Batched embedding extraction with insightface's flip test-time augmentation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from facerec.data.aligned import normalise
from facerec.runtime.hardware import use_bf16


@torch.inference_mode()
def embed_crops(model: nn.Module, crops: torch.Tensor, batch_size: int, flip: bool,
                precision: str = "fp32") -> np.ndarray:
    """L2-normalised float32 embeddings N×D of uint8 RGB crops N×3×112×112.

    With ``flip`` the embedding of the mirrored crop is added before normalising. Runs on
    the model's device (bf16 autocast applies on CPUs).
    """
    device = next(model.parameters()).device
    # channels_last: oneDNN's CPU convolutions run ~1.5x faster on NHWC (measured on MobileFaceNet).
    model.eval().to(memory_format=torch.channels_last)
    outputs = []
    for start in tqdm(range(0, len(crops), batch_size), desc="embed", unit="batch", mininterval=10):
        batch = normalise(crops[start:start + batch_size].to(device)).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16(precision) and device.type == "cpu"):
            embedding = model(batch).float()
            if flip:
                embedding = embedding + model(batch.flip(-1)).float()
        outputs.append(torch.nn.functional.normalize(embedding).cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)
