"""What sets some backbone families apart (every architecture's common checks are in test_zoo.py)."""

from __future__ import annotations

import pytest
import torch

from facerec.models.backbones import build_backbone, meta_backbone


def test_vit_embedding_of_a_face_does_not_depend_on_the_rest_of_the_batch():
    model = build_backbone("vit_t").eval()  # masking and stochastic depth are training-only
    faces = torch.randn(2, 3, 112, 112)
    with torch.inference_mode():
        torch.testing.assert_close(model(faces[:1]), model(faces)[:1], atol=1e-5, rtol=1e-5)


def test_vit_refuses_an_image_of_the_wrong_size_with_a_clear_error():
    with pytest.raises(ValueError, match="112×112"):
        build_backbone("vit_t")(torch.zeros(1, 3, 128, 128))


def test_topofr_trains_the_embedding_scale_that_insightface_freezes():
    assert meta_backbone("topofr_r50").features.weight.requires_grad
    assert not meta_backbone("iresnet50").features.weight.requires_grad
