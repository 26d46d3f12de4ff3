"""The zoo's CNNs (IResNet-100/200, AdaFace's IR nets, TopoFR) have the upstream layouts and train."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from facerec.backbones import build_backbone

SPEC = json.loads((Path(__file__).resolve().parents[2] / "shared" / "specs" / "checkpoint_layouts.json").read_text())
CNNS = ["iresnet100", "iresnet200", "adaface_ir18", "adaface_ir34", "adaface_ir50", "adaface_ir101",
        "topofr_r50", "topofr_r100", "topofr_r200"]
# TopoFR keeps its loss's classifier (num_classes×512) on the backbone module as the
# top-level ``weight``: no part of the embedding model, so the zoo's loader drops it.
NOT_BACKBONE = {"topofr_r100": {"weight"}, "topofr_r200": {"weight"}}
# Models without a spec entry: TopoFR's r50 is arcface_torch's r50 layer for layer; AdaFace's
# ir18/34 have ir50's blocks at their own depth, with counts taken on upstream's net.py.
SAME_LAYOUT = {"topofr_r50": "iresnet50"}
SAME_FAMILY = {"adaface_ir18": "adaface_ir50", "adaface_ir34": "adaface_ir50"}
UPSTREAM_PARAM_COUNTS = {"adaface_ir18": 24020352, "adaface_ir34": 34134080}


@pytest.fixture(scope="module", params=CNNS)
def cnn(request) -> tuple[str, torch.nn.Module]:
    """Each CNN built once for the module (pytest groups the tests by it), in eval mode."""
    return request.param, build_backbone(request.param).eval()


def _per_block(keys) -> set[str]:
    return {re.sub(r"^body\.\d+\.", "body.*.", key) for key in keys}


def test_state_dict_and_parameter_count_equal_the_upstream_checkpoint_less_its_classifier(cnn):
    name, model = cnn
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    params = sum(p.numel() for p in model.parameters())
    if name in SAME_FAMILY:
        assert _per_block(ours) == _per_block(SPEC[SAME_FAMILY[name]]["state_dict"])
        assert params == UPSTREAM_PARAM_COUNTS[name]
        return
    spec = SPEC[SAME_LAYOUT.get(name, name)]
    extra = NOT_BACKBONE.get(name, set())
    expected = {key: shape for key, shape in spec["state_dict"].items() if key not in extra}
    assert list(ours.items()) == list(expected.items())  # in the checkpoint's order too
    # The spec counts every parameter of the upstream module, its classifier included.
    assert params == spec["param_count"] - sum(math.prod(spec["state_dict"][key]) for key in extra)


def test_forward_gives_one_finite_512_d_embedding_per_face(cnn):
    _, model = cnn
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 512) and torch.isfinite(out).all()


def test_backward_reaches_every_trainable_parameter():
    model = build_backbone("adaface_ir18").train()  # the smallest, to stay quick on a CPU
    model(torch.randn(2, 3, 112, 112)).square().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


def test_topofr_trains_the_embedding_scale_that_insightface_freezes():
    assert build_backbone("topofr_r50").features.weight.requires_grad
    assert not build_backbone("iresnet50").features.weight.requires_grad
