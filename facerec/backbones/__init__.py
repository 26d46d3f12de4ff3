"""Face-embedding backbones, built by name from a registry (state_dict layouts as upstream)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

# What every backbone takes: N×3×112×112 float RGB (x/255 − 0.5)/0.5, ArcFace-aligned crops.
INPUT_SHAPE = (3, 112, 112)

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = builder
        return builder

    return decorator


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def build_backbone(name: str, **kwargs) -> nn.Module:
    """A freshly initialised backbone: N×3×112×112 normalised RGB in, N×embedding_size out."""
    try:
        builder = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(list_backbones())}") from None
    return builder(**kwargs)


def meta_backbone(name: str, **kwargs) -> nn.Module:
    """``build_backbone`` on the meta device: the structure, keys and shapes, no memory and no
    initialisation (which takes seconds for the large ViTs); load or allocate weights after."""
    with torch.device("meta"):
        return build_backbone(name, **kwargs)


from facerec.backbones import iresnet, mobilefacenet, adaface, topofr, vit  # noqa: E402,F401  (registration)
