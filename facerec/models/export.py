"""ONNX export of embedding models, checked against torch with onnxruntime.

The graph's input ``images`` is N×3×112×112 float32 RGB normalised as (x/255 − 0.5)/0.5,
N dynamic; its output ``embeddings`` is the N×D un-normalised embedding the torch model
returns (an AdaFace model's channel flip is part of the graph). Exported with torch's
default exporter (torch.export, then onnxscript's optimiser) as one self-contained file.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime
import torch
from torch import nn

from facerec.models.backbones import INPUT_SHAPE
from facerec.runtime.io import atomic_path

# Largest |ONNX − torch| accepted on L2-normalised embeddings (fp32 round-off is ~1e-6).
PARITY_TOLERANCE = 1e-4


def export_onnx(model: nn.Module, path: str | Path) -> None:
    """Write the eval-mode ``model`` to ``path`` as ONNX with a dynamic batch axis."""
    model.eval()
    # Batch 2, not 1: torch.export specialises a dimension whose example size is 1.
    example = torch.zeros(2, *INPUT_SHAPE)
    with atomic_path(path) as tmp:
        torch.onnx.export(model, (example,), tmp, input_names=["images"], output_names=["embeddings"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True, external_data=False,
                          verbose=False)


def onnx_max_abs_diff(model: nn.Module, path: str | Path, batch_size: int = 3) -> float:
    """Largest |ONNX − torch| over the L2-normalised embeddings of a random batch, the ONNX
    model run by onnxruntime on the CPU.

    Normalised, because cosine similarity is what matching uses and the raw scale is arbitrary
    (a randomly initialised AdaFace net emits ~400, a MobileFaceNet ~1e-4).
    """
    images = torch.randn(batch_size, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["embeddings"], {"images": images.numpy()})
    with torch.inference_mode():
        torch_out = model.eval()(images)
    difference = nn.functional.normalize(torch.from_numpy(onnx_out)) - nn.functional.normalize(torch_out)
    return difference.abs().max().item()
