"""IResNet (Deng et al., ArcFace) with insightface's arcface_torch state_dict layout.

Pre-activation style blocks: BN → conv3×3 → BN → PReLU → conv3×3(stride) → BN, plus a
1×1 conv + BN shortcut when the shape changes. The head flattens the 7×7 map into a
fully connected embedding followed by a BatchNorm1d whose scale is frozen at 1 (TopoFR
trains it: ``trainable_embedding_scale``). Layer counts per stage are arcface_torch's.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.models.backbones import INPUT_SHAPE
from facerec.registry import BACKBONES

_BN_EPS = 1e-5


class IBasicBlock(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=_BN_EPS)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels, eps=_BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    # The stages, set by name in __init__ (setattr keeps upstream's state_dict keys); declared
    # for the type checker, which would otherwise read them through nn.Module.__getattr__.
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self, blocks_per_stage: tuple[int, int, int, int], embedding_size: int = 512,
                 dropout: float = 0.0, widths: tuple[int, ...] = (64, 128, 256, 512),
                 trainable_embedding_scale: bool = False, stem_stride: int = 1) -> None:
        super().__init__()
        # stem_stride 2 (ours, not upstream) runs every stage at half the side: ~4x fewer
        # FLOPs for a CPU budget; the learned strided stem still sees the full-size crop.
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(widths[0])
        in_channels = widths[0]
        for index, (blocks, width) in enumerate(zip(blocks_per_stage, widths), start=1):
            stage = [IBasicBlock(in_channels, width, stride=2)]
            stage += [IBasicBlock(width, width, stride=1) for _ in range(blocks - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*stage))
            in_channels = width
        self.bn2 = nn.BatchNorm2d(in_channels, eps=_BN_EPS)
        self.dropout = nn.Dropout(dropout)
        side = INPUT_SHAPE[-1] // stem_stride
        for _ in blocks_per_stage:  # each stage halves the side, rounding up (3×3, padding 1)
            side = (side + 1) // 2
        self.fc = nn.Linear(in_channels * side * side, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=_BN_EPS)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = trainable_embedding_scale
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
        # Zero the last BN of each residual branch so every block starts as an identity.
        for module in self.modules():
            if isinstance(module, IBasicBlock):
                nn.init.zeros_(module.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


@BACKBONES.register("iresnet18")
def iresnet18(**kwargs) -> IResNet:
    return IResNet((2, 2, 2, 2), **kwargs)


@BACKBONES.register("iresnet34")
def iresnet34(**kwargs) -> IResNet:
    return IResNet((3, 4, 6, 3), **kwargs)


@BACKBONES.register("iresnet50")
def iresnet50(**kwargs) -> IResNet:
    return IResNet((3, 4, 14, 3), **kwargs)


@BACKBONES.register("iresnet100")
def iresnet100(**kwargs) -> IResNet:
    return IResNet((3, 13, 30, 3), **kwargs)


@BACKBONES.register("iresnet200")
def iresnet200(**kwargs) -> IResNet:
    return IResNet((6, 26, 60, 6), **kwargs)
