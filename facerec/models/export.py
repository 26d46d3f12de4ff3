"""ONNX export of embedding models, checked against torch with onnxruntime.

The graph's input ``images`` is N×3×112×112 float32 RGB normalised as (x/255 − 0.5)/0.5,
N dynamic; its output ``embeddings`` is the N×D un-normalised embedding the torch model
returns (an AdaFace model's channel flip is part of the graph). Exported with torch's
default exporter (torch.export, then onnxscript's optimiser) as one self-contained file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
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


def onnx_max_abs_diff(model: nn.Module, session: onnxruntime.InferenceSession, batch_size: int = 3) -> float:
    """Largest |ONNX − torch| over the L2-normalised embeddings of a random batch, the ONNX
    model run by ``session`` (``cpu_session``).

    Normalised, because cosine similarity is what matching uses and the raw scale is arbitrary
    (a randomly initialised AdaFace net emits ~400, a MobileFaceNet ~1e-4).
    """
    images = torch.randn(batch_size, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    (onnx_out,) = session.run(["embeddings"], {"images": images.numpy()})
    with torch.inference_mode():
        torch_out = model.eval()(images)
    return max_normalised_difference(onnx_out, torch_out)


def cpu_session(path: str | Path, threads: int = 0) -> onnxruntime.InferenceSession:
    """onnxruntime's CPU session of the ONNX file ``path`` on ``threads`` intra-op threads
    (0: onnxruntime's default, one per physical core)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported_session(model: nn.Module, threads: int = 0) -> onnxruntime.InferenceSession:
    """The eval-mode ``model`` exported (``export_onnx``, to a temporary file) in a ``cpu_session``."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.onnx"
        export_onnx(model, path)
        return cpu_session(path, threads)


def max_normalised_difference(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Largest |a − b| between the L2-normalised rows of two N×D embedding batches."""
    a, b = (torch.as_tensor(np.asarray(x, np.float32)) for x in (a, b))
    return (nn.functional.normalize(a) - nn.functional.normalize(b)).abs().max().item()


class OnnxParityError(RuntimeError):
    """onnxruntime's embeddings of real faces differ from torch's by more than PARITY_TOLERANCE."""


def onnxruntime_forward(model: nn.Module, example: torch.Tensor, threads: int):
    """The eval-mode ``model`` exported to ONNX and run by onnxruntime on the CPU on
    ``threads`` threads: a function from a float N×3×112×112 batch (the normalised input) to
    the model's raw N×D float32 embeddings.

    Checked first on ``example`` (real normalised faces, not noise: the figures that matter
    are on faces) against the torch model; an OnnxParityError says by how much they differ
    when it exceeds PARITY_TOLERANCE, so a run never scores embeddings torch would not give."""
    session = exported_session(model, threads)

    def forward(batch: torch.Tensor) -> np.ndarray:
        return session.run(["embeddings"], {"images": np.ascontiguousarray(batch.numpy(), np.float32)})[0]

    with torch.inference_mode():
        expected = model(example)
    difference = max_normalised_difference(forward(example), expected)
    if difference > PARITY_TOLERANCE:
        raise OnnxParityError(f"onnxruntime's embeddings of {len(example)} faces differ from torch's by "
                              f"{difference:.2e} (> {PARITY_TOLERANCE}): run this model in torch "
                              "(runtime: torch in params.yaml's evaluate or monitor section)")
    return forward
