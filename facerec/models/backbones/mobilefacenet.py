"""MobileFaceNet (Chen et al. 2018) with insightface's arcface_torch state_dict layout.

Inverted-residual blocks (1×1 expand → 3×3 depthwise → 1×1 linear projection) and a global
depthwise 7×7 convolution (GDC) instead of global pooling, keeping the spatial layout of
the face in the embedding. ``scale`` widens every stage (insightface's default is 2).
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.registry import BACKBONES


class ConvBlock(nn.Module):
    """conv → BN → PReLU; with ``linear`` conv → BN only (a linear bottleneck)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 padding: int = 0, groups: int = 1, linear: bool = False) -> None:
        super().__init__()
        layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if not linear:
            layers.append(nn.PReLU(out_channels))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Expand to ``hidden`` channels, depthwise 3×3 (with ``stride``), project to ``out``."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int, stride: int,
                 residual: bool = False) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(in_channels, hidden),
            ConvBlock(hidden, hidden, kernel=3, stride=stride, padding=1, groups=hidden),
            ConvBlock(hidden, out_channels, linear=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.residual else out


class Residual(nn.Module):
    def __init__(self, channels: int, blocks: int, hidden: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[DepthWise(channels, channels, hidden, stride=1, residual=True) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GlobalDepthwiseEmbedding(nn.Module):
    """7×7 depthwise conv over the final map, then a linear embedding with BN (insightface's GDC)."""

    def __init__(self, channels: int, embedding_size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            ConvBlock(channels, channels, kernel=7, groups=channels, linear=True),
            nn.Flatten(),
            nn.Linear(channels, embedding_size, bias=False),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class MobileFaceNet(nn.Module):
    def __init__(self, embedding_size: int = 512, blocks: tuple[int, int, int, int] = (1, 4, 6, 2),
                 scale: int = 2) -> None:
        super().__init__()
        narrow, wide = 64 * scale, 128 * scale
        stem: list[nn.Module] = [ConvBlock(3, narrow, kernel=3, stride=2, padding=1)]
        if blocks[0] == 1:
            stem.append(ConvBlock(narrow, narrow, kernel=3, padding=1, groups=64))
        else:
            stem.append(Residual(narrow, blocks[0], hidden=128))
        self.layers = nn.ModuleList([
            *stem,
            DepthWise(narrow, narrow, hidden=128, stride=2),
            Residual(narrow, blocks[1], hidden=128),
            DepthWise(narrow, wide, hidden=256, stride=2),
            Residual(wide, blocks[2], hidden=256),
            DepthWise(wide, wide, hidden=512, stride=2),
            Residual(wide, blocks[3], hidden=256),
        ])
        self.conv_sep = ConvBlock(wide, 512)
        self.features = GlobalDepthwiseEmbedding(512, embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


@BACKBONES.register("mobilefacenet")
def mobilefacenet(**kwargs) -> MobileFaceNet:
    return MobileFaceNet(**kwargs)
