"""AdaFace's IR networks (Kim et al., CVPR 2022) in mk-minchul/AdaFace's state_dict layout.

Keys are those of upstream's ``net.Backbone``: an AdaFace checkpoint is a Lightning one,
whose ``state_dict`` prefixes them with ``model.`` and adds the margin head's
``head.kernel``; the loader strips the first and drops the second.

The residual branch computes what insightface's IResNet block does (BN → conv3×3 → BN →
PReLU → conv3×3(stride) → BN, all BN eps 1e-5), but the network differs elsewhere:

- a block that keeps its channel count subsamples the identity for its shortcut (a 1×1
  max-pool with the block's stride), so the first block (64 → 64, stride 2) has no
  shortcut weights where IResNet has a 1×1 conv + BN;
- the embedding BatchNorm1d has no affine parameters at all;
- dropout (0.4 upstream) sits between the last BatchNorm2d and the flatten.

Input: N×3×112×112 **BGR** (AdaFace was trained on BGR crops) normalised as
(x/255 − 0.5)/0.5; the zoo's loader converts our RGB. Output: the un-normalised
N×embedding_size embedding. Upstream's forward returns (embedding / norm, norm); ours is
their product, so cosine similarities are identical.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.registry import BACKBONES

_WIDTHS = (64, 128, 256, 512)


class BasicBlockIR(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        # Attribute order is upstream's, so state_dict keys come in the checkpoint's order.
        if in_channels == channels:
            # A 1×1 max-pool is plain strided subsampling: a parameter-free shortcut.
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class AdaFaceIR(nn.Module):
    """N×3×112×112 normalised BGR in, N×embedding_size un-normalised embeddings out."""

    def __init__(self, blocks_per_stage: tuple[int, int, int, int], embedding_size: int = 512,
                 dropout: float = 0.4) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, _WIDTHS[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(_WIDTHS[0]),
            nn.PReLU(_WIDTHS[0]),
        )
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(_WIDTHS[-1]),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(_WIDTHS[-1] * 7 * 7, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        blocks = []
        in_channels = _WIDTHS[0]
        for count, width in zip(blocks_per_stage, _WIDTHS):
            blocks.append(BasicBlockIR(in_channels, width, stride=2))
            blocks += [BasicBlockIR(width, width, stride=1) for _ in range(count - 1)]
            in_channels = width
        self.body = nn.Sequential(*blocks)
        # Upstream's initialisation, so training from scratch starts where AdaFace's does.
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


@BACKBONES.register("adaface_ir18")
def adaface_ir18(**kwargs) -> AdaFaceIR:
    return AdaFaceIR((2, 2, 2, 2), **kwargs)


@BACKBONES.register("adaface_ir34")
def adaface_ir34(**kwargs) -> AdaFaceIR:
    return AdaFaceIR((3, 4, 6, 3), **kwargs)


@BACKBONES.register("adaface_ir50")
def adaface_ir50(**kwargs) -> AdaFaceIR:
    return AdaFaceIR((3, 4, 14, 3), **kwargs)


@BACKBONES.register("adaface_ir101")
def adaface_ir101(**kwargs) -> AdaFaceIR:
    return AdaFaceIR((3, 13, 30, 3), **kwargs)
