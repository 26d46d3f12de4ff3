"""SFace's network (OpenCV's ``face_recognition_sface_2021dec``; Zhong et al., 2021) as a torch module.

A MobileNet-v1 body (a 3×3 stem, then 13 depthwise-separable blocks, 32 → 1024 channels,
stride 16) and insightface's "E" embedding: BN → dropout 0.4 → a linear layer over the whole
7×7×1024 map → BN. Built with the published file's layer order and epsilons, so that
``facerec.models.peers.sface.sface_state_dict`` loads its weights and this module gives the
peer's embeddings (``train.init_from: sface_2021dec``) to fine-tune or adapt.

It takes our input convention (RGB, (x/255 − 0.5)/0.5) and converts it to the file's (BGR,
(x − 127.5)/128) in ``forward``: the same crop gives the same embedding as the peer's graph.
"""

from __future__ import annotations

import torch
from torch import nn

from facerec.registry import BACKBONES

# The published file's batch-norm epsilons (MXNet's defaults where it was trained).
CONV_BN_EPS = 1e-3
EMBEDDING_BN_EPS = 2e-5
DROPOUT = 0.4
# (channels in, channels out, stride of the depthwise conv) of blocks conv_2 … conv_14.
BLOCKS = [(32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1), (256, 512, 2),
          *[(512, 512, 1)] * 5, (512, 1024, 2), (1024, 1024, 1)]
# Our input is (x − 127.5)/127.5; the file's graph expects (x − 127.5)/128.
INPUT_RESCALE = 127.5 / 128


class ConvBNPReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_channels, eps=CONV_BN_EPS), nn.PReLU(out_channels))


class SFaceNet(nn.Module):
    def __init__(self, embedding_size: int = 128) -> None:
        super().__init__()
        layers = [ConvBNPReLU(3, 32, 3)]
        for in_channels, out_channels, stride in BLOCKS:
            layers += [ConvBNPReLU(in_channels, in_channels, 3, stride, groups=in_channels),
                       ConvBNPReLU(in_channels, out_channels, 1)]
        self.body = nn.Sequential(*layers)
        self.features = nn.Sequential(nn.BatchNorm2d(1024, eps=EMBEDDING_BN_EPS), nn.Dropout(DROPOUT), nn.Flatten(),
                                      nn.Linear(1024 * 7 * 7, embedding_size),
                                      nn.BatchNorm1d(embedding_size, eps=EMBEDDING_BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.body(x.flip(1) * INPUT_RESCALE))


@BACKBONES.register("sface")
def sface(**kwargs) -> SFaceNet:
    return SFaceNet(**kwargs)
