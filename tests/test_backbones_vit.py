"""The face ViTs (insightface's vit_*, TransFace's) load the upstream checkpoints and embed faces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from facerec.backbones import build_backbone

SPEC = json.loads((Path(__file__).resolve().parents[2] / "shared" / "specs" / "checkpoint_layouts.json").read_text())
VITS = ["vit_t", "vit_s", "vit_b", "vit_l", "transface_vit_s", "transface_vit_b", "transface_vit_l"]
LARGE = {"vit_l", "transface_vit_l"}
# Counted on upstream's own modules (arcface_torch and TransFace backbones/vit.py, get_model
# settings) for the models the spec does not list; the rest come from the spec.
UPSTREAM_PARAM_COUNTS = {"vit_t": 19137792, "vit_b": 113833472, "vit_l": 255684352, "transface_vit_b": 124471040}
# A model without a spec entry has the layout of the listed one of its family, at its own depth.
SAME_FAMILY = {"vit_t": "vit_s", "vit_b": "vit_s", "vit_l": "vit_s", "transface_vit_b": "transface_vit_s"}


@pytest.fixture(scope="module", params=VITS)
def vit(request) -> tuple[str, torch.nn.Module]:
    """Each ViT built once for the module (pytest groups the tests by it), in eval mode."""
    return request.param, build_backbone(request.param).eval()


def _per_block(keys) -> set[str]:
    return {re.sub(r"^blocks\.\d+\.", "blocks.*.", key) for key in keys}


def test_state_dict_and_parameter_count_equal_the_upstream_checkpoint(vit):
    name, model = vit
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    params = sum(p.numel() for p in model.parameters())
    if name in SPEC:
        assert ours == SPEC[name]["state_dict"]
        assert params == SPEC[name]["param_count"]
    else:
        assert _per_block(ours) == _per_block(SPEC[SAME_FAMILY[name]]["state_dict"])
        assert params == UPSTREAM_PARAM_COUNTS[name]


def test_forward_gives_one_finite_512_d_embedding_per_face(vit):
    name, model = vit
    batch = 1 if name in LARGE else 2
    with torch.inference_mode():
        out = model(torch.randn(batch, 3, 112, 112))
    assert out.shape == (batch, 512) and torch.isfinite(out).all()


def test_eval_embedding_of_a_face_does_not_depend_on_the_rest_of_the_batch():
    model = build_backbone("vit_t").eval()  # masking and stochastic depth are training-only
    faces = torch.randn(2, 3, 112, 112)
    with torch.inference_mode():
        torch.testing.assert_close(model(faces[:1]), model(faces)[:1], atol=1e-5, rtol=1e-5)


def test_training_step_reaches_every_parameter_including_the_mask_token():
    model = build_backbone("vit_t", embedding_size=128).train()
    model(torch.randn(2, 3, 112, 112)).square().mean().backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key
    # In training a random 10% of vit_t's tokens skip the blocks and re-enter as the mask token.
    assert model.mask_token.grad.abs().sum() > 0


def test_an_image_of_the_wrong_size_is_a_clear_error():
    with pytest.raises(ValueError, match="112×112"):
        build_backbone("vit_t")(torch.zeros(1, 3, 128, 128))
