"""The margin heads put their margins where the papers do."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from facerec.config import HeadParams
from facerec.models.heads import AdaFaceHead, ArcFaceHead, CombinedMarginHead, CosFaceHead, build_head


def test_arcface_adds_the_angular_margin_to_the_true_class_only():
    head = ArcFaceHead(4, 3, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.eye(3, 4))
    angle = 0.6
    embedding = torch.tensor([[math.cos(angle), math.sin(angle), 0.0, 0.0]])
    logits = head(embedding, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(10 * math.cos(angle + 0.5), abs=1e-5)
    assert logits[0, 1].item() == pytest.approx(10 * math.cos(math.pi / 2 - angle), abs=1e-5)


def test_arcface_past_pi_falls_back_to_a_decreasing_penalty():
    head = ArcFaceHead(2, 2, scale=1.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    angles = torch.tensor([2.8, 3.0])  # θ + m > π
    logits = head(torch.stack([angles.cos(), angles.sin()], 1), torch.tensor([0, 0]))[:, 0]
    expected = angles.cos() - math.sin(math.pi - 0.5) * 0.5
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    assert logits[1] < logits[0]


def _unit(angles: torch.Tensor) -> torch.Tensor:
    return torch.stack([angles.cos(), angles.sin()], 1)


def _two_class_head(head: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    return head


def test_cosface_subtracts_the_margin_from_the_true_cosine_only():
    head = _two_class_head(CosFaceHead(2, 2, scale=30.0, margin=0.35))
    angles = torch.tensor([0.3, 1.2])
    logits = head(_unit(angles) * 7.0, torch.tensor([0, 0]))
    torch.testing.assert_close(logits[:, 0], 30.0 * (angles.cos() - 0.35), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits[:, 1], 30.0 * angles.sin(), atol=1e-5, rtol=0)


def test_the_combined_margin_covers_arcface_and_cosface():
    embeddings, labels = torch.randn(6, 8), torch.randint(0, 5, (6,))
    combined = CombinedMarginHead(8, 5, scale=64.0, m1=1.0, m2=0.5, m3=0.0)
    arcface = ArcFaceHead(8, 5, scale=64.0, margin=0.5)
    arcface.load_state_dict(combined.state_dict())
    torch.testing.assert_close(combined(embeddings, labels), arcface(embeddings, labels))
    both = _two_class_head(CombinedMarginHead(2, 2, scale=1.0, m1=1.0, m2=0.2, m3=0.1))
    angle = torch.tensor([0.7])
    assert both(_unit(angle), torch.tensor([0]))[0, 0].item() == pytest.approx(math.cos(0.9) - 0.1, abs=1e-6)
    sphere = _two_class_head(CombinedMarginHead(2, 2, scale=1.0, m1=2.0, m2=0.0, m3=0.0))
    assert sphere(_unit(angle), torch.tensor([0]))[0, 0].item() == pytest.approx(math.cos(1.4), abs=1e-5)


def test_every_margin_keeps_the_target_logit_decreasing_in_the_angle():
    angles = torch.linspace(0.01, math.pi - 0.01, 400)
    for head in (ArcFaceHead(2, 2, 1.0, 0.5), CosFaceHead(2, 2, 1.0, 0.35),
                 CombinedMarginHead(2, 2, 1.0, m1=1.5, m2=0.3, m3=0.1)):
        target = _two_class_head(head)(_unit(angles), torch.zeros(400, dtype=torch.long))[:, 0]
        assert (target.diff() < 0).all(), type(head).__name__


def test_margins_are_computed_in_fp32_under_bf16_autocast():
    head = ArcFaceHead(16, 4, scale=64.0, margin=0.5)
    embeddings, labels = torch.randn(8, 16), torch.randint(0, 4, (8,))
    expected = head(embeddings, labels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(embeddings.bfloat16(), labels)
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits, expected, atol=64 * 0.01, rtol=0)  # only the input's bf16 rounding


def test_adaface_margin_follows_the_feature_norm_and_its_statistics_are_saved():
    head = _two_class_head(AdaFaceHead(2, 2, scale=1.0, margin=0.4, h=0.333, t_alpha=1.0))
    angle = torch.tensor([0.8, 0.8])
    norms = torch.tensor([[5.0], [35.0]])  # a low-quality and a high-quality face, same angle
    head.train()
    logits = head(_unit(angle) * norms, torch.tensor([0, 0]))
    # t_alpha = 1: the statistics are this batch's.
    assert head.norm_mean.item() == pytest.approx(20.0) and head.norm_std.item() == pytest.approx(norms.std().item())
    quality = ((norms[:, 0] - 20.0) / (norms.std() + 1e-3) * 0.333).clamp(-1, 1)
    expected = torch.cos(0.8 - 0.4 * quality) - (0.4 + 0.4 * quality)
    torch.testing.assert_close(logits[:, 0], expected, atol=1e-5, rtol=0)
    assert logits[1, 0] < logits[0, 0]  # the clear face gets the harder margin
    restored = AdaFaceHead(2, 2, scale=1.0, margin=0.4, h=0.333, t_alpha=1.0)
    restored.load_state_dict(head.state_dict())
    assert restored.norm_std.item() == pytest.approx(head.norm_std.item())
    head.eval()
    head(_unit(angle) * 100.0, torch.tensor([0, 0]))
    assert head.norm_mean.item() == pytest.approx(20.0)  # evaluation does not move the statistics


def test_build_head_by_name_takes_the_head_params():
    cosface = build_head(8, 3, HeadParams(type="cosface", scale=30.0, margin=0.35))
    assert isinstance(cosface, CosFaceHead) and (cosface.scale, cosface.m3) == (30.0, 0.35)
    assert isinstance(build_head(8, 3, HeadParams(type="adaface", margin=0.4)), AdaFaceHead)
    with pytest.raises(ValidationError, match="unknown head 'sphereface'"):
        HeadParams(type="sphereface")
