"""Margin-based classification heads used to train face embeddings.

Every head takes the backbone's raw embeddings N×D and the labels, and returns scaled
logits N×C for cross-entropy. ``margin_logits`` does the same from cosines to any subset of
the class centres (Partial FC's sampled, sharded classes: ``facerec.models.partial_fc``), where a
row whose class is not in the subset has target −1 and gets no margin. Cosines and margins are
computed in fp32 even under autocast: bf16 resolves cos θ near 1 only to ~0.004, as coarse as
the margins themselves.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from facerec.config import HeadParams
from facerec.registry import HEADS


class CosineClassifier(nn.Module):
    """Class centres ``weight`` C×D and the fp32 cosine of each embedding to each centre."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 cosines of each embedding to each row of ``weight`` (default: every centre)."""
        weight = self.weight if weight is None else weight
        return F.linear(F.normalize(embeddings.float()), F.normalize(weight.float())).clamp(-1.0, 1.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.margin_logits(self.cosine(embeddings), labels, embeddings)

    def margin_logits(self, cosine: torch.Tensor, targets: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled logits from N×K fp32 cosines, the margin on column ``targets[i]`` of row i
        (none where it is −1); ``embeddings`` are the N raw embeddings the cosines came from."""
        rows = torch.nonzero(targets >= 0).squeeze(1)
        columns = targets[rows]
        margined = self._margin(cosine[rows, columns], embeddings[rows])
        return cosine.index_put((rows, columns), margined) * self.scale

    def _margin(self, target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """The margined target cosine of each row from its cosine and its raw embedding."""
        raise NotImplementedError


class CombinedMarginHead(CosineClassifier):
    """insightface's combined margin: target logit s·(cos(m1·θ + m2) − m3), others s·cos θ.

    (m1, m2, m3) = (1, m, 0) is ArcFace (Deng et al. 2019), (1, 0, m) CosFace (Wang et al.
    2018), m1 > 1 SphereFace's multiplicative margin. Where m1·θ + m2 would pass π the
    target stops decreasing with θ, so there it falls back to cos θ − m3 − a constant
    penalty, which keeps decreasing: insightface's m2·sin(π − m2) when m1 = 1 (so ArcFace
    logits equal insightface's everywhere), else the exact penalty at the boundary.
    """

    def __init__(self, embedding_size: int, num_classes: int, scale: float, m1: float, m2: float,
                 m3: float) -> None:
        super().__init__(embedding_size, num_classes, scale)
        if m1 < 1.0 or not 0.0 <= m2 < math.pi or m3 < 0.0:
            raise ValueError(f"margins need m1 >= 1, 0 <= m2 < π, m3 >= 0; got {m1}, {m2}, {m3}")
        self.m1, self.m2, self.m3 = m1, m2, m3
        self._theta_limit = (math.pi - m2) / m1  # where m1·θ + m2 reaches π
        self._fallback = m2 * math.sin(math.pi - m2) if m1 == 1.0 else math.cos(self._theta_limit) + 1.0

    def _margin(self, target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        if self.m1 == 1.0:  # cos(θ + m2) from cos θ without acos, whose gradient explodes at ±1
            sine = torch.sqrt((1.0 - target * target).clamp_min(0.0))
            angular = target * math.cos(self.m2) - sine * math.sin(self.m2)
        else:
            angular = torch.cos(self.m1 * torch.acos(target.clamp(-1 + 1e-7, 1 - 1e-7)) + self.m2)
        inside = target > math.cos(self._theta_limit)
        return torch.where(inside, angular, target - self._fallback) - self.m3


class ArcFaceHead(CombinedMarginHead):
    """Additive angular margin: s·cos(θ + m) for the true class."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__(embedding_size, num_classes, scale, m1=1.0, m2=margin, m3=0.0)


class CosFaceHead(CombinedMarginHead):
    """Additive cosine margin: s·(cos θ − m) for the true class."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float, margin: float) -> None:
        super().__init__(embedding_size, num_classes, scale, m1=1.0, m2=0.0, m3=margin)


class AdaFaceHead(CosineClassifier):
    """AdaFace (Kim et al. 2022): the margin adapts to image quality, read from the feature norm.

    A face whose embedding norm is ``h`` standard deviations above the running mean (a clear
    face) gets the full angular margin m and a larger additive one; a blurry one (low norm)
    gets the margin moved from angle to cosine, down to none. The running mean and std of
    the norms (updated with momentum ``t_alpha`` in training mode only) are buffers, so they
    are saved and restored with the head's state_dict.
    """

    EPS = 1e-3
    # Registered buffers, declared for the type checker (nn.Module.__getattr__ returns Tensor | Module).
    norm_mean: torch.Tensor
    norm_std: torch.Tensor

    def __init__(self, embedding_size: int, num_classes: int, scale: float, margin: float, h: float,
                 t_alpha: float) -> None:
        super().__init__(embedding_size, num_classes, scale)
        self.margin, self.h, self.t_alpha = margin, h, t_alpha
        self.register_buffer("norm_mean", torch.tensor(20.0))
        self.register_buffer("norm_std", torch.tensor(100.0))

    def margin_logits(self, cosine: torch.Tensor, targets: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        if self.training:  # the statistics follow every row, whichever subset of classes we hold
            norms = self._norms(embeddings)
            with torch.no_grad():
                self.norm_mean.lerp_(norms.mean(), self.t_alpha)
                self.norm_std.lerp_(norms.std(), self.t_alpha)
        return super().margin_logits(cosine, targets, embeddings)

    def _norms(self, embeddings: torch.Tensor) -> torch.Tensor:
        return embeddings.detach().float().norm(dim=1).clamp(0.001, 100.0)

    def _margin(self, target: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        quality = ((self._norms(embeddings) - self.norm_mean) / (self.norm_std + self.EPS) * self.h).clamp(-1.0, 1.0)
        theta = torch.acos(target.clamp(-1 + self.EPS, 1 - self.EPS))
        angular = torch.cos((theta - self.margin * quality).clamp(self.EPS, math.pi - self.EPS))
        return angular - (self.margin + self.margin * quality)


# Builders by name (facerec.registry.HEADS), each from the head's fields of HeadParams.
HEADS.register("arcface")(lambda size, classes, head: ArcFaceHead(size, classes, head.scale, head.margin))
HEADS.register("cosface")(lambda size, classes, head: CosFaceHead(size, classes, head.scale, head.margin))
HEADS.register("combined")(lambda size, classes, head: CombinedMarginHead(size, classes, head.scale, head.m1,
                                                                          head.m2, head.m3))
HEADS.register("adaface")(lambda size, classes, head: AdaFaceHead(size, classes, head.scale, head.margin, head.h,
                                                                  head.t_alpha))


def build_head(embedding_size: int, num_classes: int, head: HeadParams) -> CosineClassifier:
    """The margin head ``head.type`` with its parameters from ``head``: the classifier over
    ``num_classes`` centres of ``embedding_size``."""
    module: CosineClassifier = HEADS.get(head.type)(embedding_size, num_classes, head)
    return module
