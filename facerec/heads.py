"""Margin-based classification heads used to train face embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ArcFaceHead(nn.Module):
    """Additive angular margin (Deng et al. 2019): logits s·cos(θ + m) for the true class,
    s·cos θ for the others, over L2-normalised embeddings and class centres.

    Where θ + m would pass π, cos(θ + m) stops decreasing with θ; as insightface does, the
    target logit there falls back to cos θ − m·sin(m), which keeps decreasing. The margin is
    computed in fp32 even under autocast: bf16 cannot resolve cos θ near 1.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0,
                 margin: float = 0.5) -> None:
        super().__init__()
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self._cos_limit = math.cos(math.pi - margin)
        self._fallback = math.sin(math.pi - margin) * margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits N×C; feed them to cross-entropy."""
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
            cosine = cosine.clamp(-1.0, 1.0)
            target = cosine.gather(1, labels[:, None])
            sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
            with_margin = target * math.cos(self.margin) - sine * math.sin(self.margin)
            with_margin = torch.where(target > self._cos_limit, with_margin, target - self._fallback)
            logits = cosine.scatter(1, labels[:, None], with_margin)
            return logits * self.scale
