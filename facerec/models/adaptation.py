"""A linear map after a backbone, fitted on the user's people (``facerec.training.adaptation``).

Saved in our checkpoint beside the backbone and applied wherever the checkpoint is loaded,
so evaluation, benchmark, monitoring and ONNX export all see the deployed model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class EmbeddingMap(nn.Module):
    """``backbone``'s L2-normalised embedding, centred on ``mean`` (D) and multiplied by
    ``projection`` (D×D): N×3×112×112 normalised RGB in, N×D embeddings out (not normalised:
    callers normalise, after adding the flipped crop's embedding)."""

    mean: torch.Tensor
    projection: torch.Tensor

    def __init__(self, backbone: nn.Module, mean: torch.Tensor, projection: torch.Tensor) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("projection", projection.detach().clone().float())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (F.normalize(self.backbone(images).float()) - self.mean) @ self.projection

    def state(self) -> dict[str, torch.Tensor]:
        """The map alone, as our checkpoint stores it."""
        return {"mean": self.mean.cpu(), "projection": self.projection.cpu()}
