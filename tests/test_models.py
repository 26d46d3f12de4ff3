"""Backbones match insightface's state_dict layouts; heads and checkpoints behave as specified."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from facerec.backbones import build_backbone, list_backbones
from facerec.heads import ArcFaceHead
from facerec.zoo import load_pretrained, save_checkpoint

SPEC = json.loads((Path(__file__).resolve().parents[2] / "shared" / "specs" / "checkpoint_layouts.json").read_text())


# TopoFR checkpoints add a classifier to the backbone: tests/test_backbones_cnn.py checks them.
@pytest.mark.parametrize("name", [n for n in list_backbones() if n in SPEC and not n.startswith("topofr_")])
def test_state_dict_keys_and_shapes_equal_the_upstream_checkpoint(name):
    model = build_backbone(name)
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == SPEC[name]["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == SPEC[name]["param_count"]


@pytest.mark.parametrize("name", list_backbones())
def test_forward_gives_one_embedding_per_face(name):
    model = build_backbone(name, embedding_size=128).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 128) and torch.isfinite(out).all()


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


def test_our_checkpoint_and_an_insightface_state_dict_load_through_load_pretrained(tmp_path):
    model = build_backbone("mobilefacenet").eval()
    save_checkpoint(tmp_path / "ours.pt", model, "mobilefacenet", 512, identities=["a", "b"])
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "upstream.pt")
    batch = torch.randn(2, 3, 112, 112)
    with torch.inference_mode():
        expected = model(batch)
        for name in ("ours.pt", "upstream.pt"):
            loaded = load_pretrained("mobilefacenet", tmp_path / name)
            assert not loaded.training
            torch.testing.assert_close(loaded(batch), expected)


def test_a_mismatched_or_broken_checkpoint_is_a_clear_error(tmp_path):
    state = build_backbone("mobilefacenet").state_dict()
    state.pop("conv_sep.layers.0.weight")
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="missing keys.*conv_sep.layers.0.weight"):
        load_pretrained("mobilefacenet", tmp_path / "partial.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        load_pretrained("mobilefacenet", tmp_path / "text.pt")
