"""Model complexity in the face-recognition field's convention: GFLOPs and Mparams.

GFLOPs are multiply-accumulates × 1e-9 of one forward pass on one 3×112×112 image, as
ptflops (its pytorch backend) counts them; that is what insightface's model tables and the
published zoo figures report. ptflops counts convolutions and linear layers, one MAC per
element for normalisation layers (two when affine), activations and pooling (PReLU twice:
its module hook and its ``F.prelu`` patch both count), and leaves out what is written as
plain tensor arithmetic: residual additions and a ViT's attention products (``q @ k``,
``weights @ v``). So it reads 12.13 G for IResNet-100 and 5.51 G for TransFace ViT-S,
where torch's FLOP counter (convolutions and every matrix product, nothing else) reads
12.09 and 5.76.

Mparams are all parameters × 1e-6, frozen ones included (insightface's fixed embedding-BN
scale), plus the classifier tensors a checkpoint carries beside the backbone.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from ptflops import get_model_complexity_info
from torch import nn

from facerec.models.backbones import INPUT_SHAPE, meta_backbone


@dataclass(frozen=True)
class Complexity:
    gflops: float  # multiply-accumulates × 1e-9, one 112×112 image
    mparams: float  # parameters × 1e-6, classifier tensors included


def count_macs(model: nn.Module) -> int:
    """Multiply-accumulates of ``model`` on one 112×112 image, counted by ptflops."""
    device = next(model.parameters()).device
    training = model.training
    # Only shapes are counted; channels_last runs oneDNN's CPU convolutions ~1.5-2x faster.
    image = torch.zeros(1, *INPUT_SHAPE, device=device).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad():
            # ptflops leaves its counting methods on the module it is given: give it a wrapper.
            macs, _ = get_model_complexity_info(
                nn.Sequential(model), INPUT_SHAPE, print_per_layer_stat=False, as_strings=False,
                input_constructor=lambda _: image, backend="pytorch")
    finally:
        model.train(training)
    if macs is None:  # ptflops prints the exception and returns None
        raise RuntimeError(f"ptflops could not count {type(model).__name__}: see the traceback above")
    return macs


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def complexity(model: nn.Module | str, classifier_parameters: int = 0) -> Complexity:
    """GFLOPs and Mparams of ``model``, or of a registered architecture by name (512-d
    embedding), plus ``classifier_parameters`` in the Mparams."""
    macs, parameters = _architecture_counts(model) if isinstance(model, str) else (
        count_macs(model), count_parameters(model))
    return Complexity(macs / 1e9, (parameters + classifier_parameters) / 1e6)


@functools.cache
def _architecture_counts(arch: str) -> tuple[int, int]:
    """MACs and parameters of ``arch``, counted on zero weights.

    ptflops needs a real forward pass: on the meta device a linear layer's kernel calls the
    ``torch.mm`` that ptflops patches (counting it twice) and autocast refuses meta tensors.
    Values do not matter, so the model is built on the meta device and given zeroed memory
    instead of initialised weights (which take seconds for the large ViTs).
    """
    model = meta_backbone(arch).to_empty(device="cpu").eval().to(memory_format=torch.channels_last)
    for tensor in model.state_dict().values():
        tensor.zero_()  # uninitialised memory may hold NaNs or denormals, which run slowly
    return count_macs(model), count_parameters(model)
