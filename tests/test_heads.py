"""The margin heads put their margins where the papers do."""

from __future__ import annotations

import math

import pytest
import torch

from facerec.heads import ArcFaceHead


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
