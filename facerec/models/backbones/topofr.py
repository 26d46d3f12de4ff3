"""TopoFR (Dan et al., NeurIPS 2024) backbones: insightface's IResNet with a trained embedding scale.

TopoFR's network (DanJun6737/TopoFR ``backbones/iresnet.py``) is arcface_torch's IResNet,
layer for layer, with two differences:

- the embedding BatchNorm1d's scale (``features.weight``) is trained, where arcface_torch
  freezes it at 1, so a TopoFR checkpoint's scale is not all ones;
- the classifier of its training loss, a num_classes×512 matrix under the top-level key
  ``weight``, lives on the backbone module. It is not part of the embedding model, so these
  backbones leave it out: their state_dict is a TopoFR checkpoint's minus ``weight``.

Input is N×3×112×112 RGB normalised as (x/255 − 0.5)/0.5; output is upstream's
``forward(x, phase="infer")``, the un-normalised N×embedding_size BatchNorm1d output.
"""

from __future__ import annotations

from facerec.models.backbones.iresnet import IResNet, iresnet50, iresnet100, iresnet200
from facerec.registry import BACKBONES


@BACKBONES.register("topofr_r50")
def topofr_r50(**kwargs) -> IResNet:
    return iresnet50(trainable_embedding_scale=True, **kwargs)


@BACKBONES.register("topofr_r100")
def topofr_r100(**kwargs) -> IResNet:
    return iresnet100(trainable_embedding_scale=True, **kwargs)


@BACKBONES.register("topofr_r200")
def topofr_r200(**kwargs) -> IResNet:
    return iresnet200(trainable_embedding_scale=True, **kwargs)
