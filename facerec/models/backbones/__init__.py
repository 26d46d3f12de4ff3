"""Face-embedding backbones, built by name (``facerec.registry.BACKBONES``; state_dict layouts as upstream).

Importing this package imports every backbone module, which registers its builders.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.registry import BACKBONES

# What every backbone takes: N×3×112×112 float RGB (x/255 − 0.5)/0.5, ArcFace-aligned crops.
INPUT_SHAPE = (3, 112, 112)


def list_backbones() -> list[str]:
    return sorted(BACKBONES.names)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """A freshly initialised backbone: N×3×112×112 normalised RGB in, N×embedding_size out."""
    module: nn.Module = BACKBONES.get(name)(**kwargs)
    return module


def meta_backbone(name: str, **kwargs) -> nn.Module:
    """``build_backbone`` on the meta device: the structure, keys and shapes, no memory and no
    initialisation (which takes seconds for the large ViTs); load or allocate weights after."""
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


from facerec.models.backbones import adaface, iresnet, mobilefacenet, sface, topofr, vit  # noqa: E402,F401  (registration)
