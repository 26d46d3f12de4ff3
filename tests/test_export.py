"""Exported ONNX models embed faces as the torch models do, at any batch size."""

from __future__ import annotations

import json

import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from facerec.cli import app
from facerec.models.backbones import INPUT_SHAPE, build_backbone, list_backbones
from facerec.models.export import export_onnx


def _onnx_embeddings(path, faces: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(["embeddings"], {"images": faces.numpy()})[0])


def _max_abs_diff_normalised(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.nn.functional.normalize(a) - torch.nn.functional.normalize(b)).abs().max().item()


@pytest.mark.parametrize("arch", ["mobilefacenet", "iresnet18", "vit_t"])
def test_onnxruntime_matches_torch_at_a_batch_size_other_than_the_exported_one(arch, tmp_path):
    model = build_backbone(arch).eval()
    export_onnx(model, tmp_path / f"{arch}.onnx")
    faces = torch.randn(3, *INPUT_SHAPE)
    with torch.inference_mode():
        expected = model(faces)
    assert _max_abs_diff_normalised(_onnx_embeddings(tmp_path / f"{arch}.onnx", faces), expected) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(set(list_backbones()) - {"mobilefacenet", "iresnet18", "vit_t"}))
def test_every_other_backbone_exports_with_onnxruntime_parity(arch, tmp_path):
    """The rest of the zoo (minutes: IResNet-200 and ViT-L export graphs of 0.5-1 GB)."""
    test_onnxruntime_matches_torch_at_a_batch_size_other_than_the_exported_one(arch, tmp_path)
    (tmp_path / f"{arch}.onnx").unlink()


def test_export_command_puts_adafaces_channel_flip_into_the_graph(tmp_path):
    model = build_backbone("adaface_ir18").eval()
    lightning = {"state_dict": {**{f"model.{key}": value for key, value in model.state_dict().items()},
                                "head.kernel": torch.randn(512, 10)}}
    torch.save(lightning, tmp_path / "adaface.ckpt")
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(tmp_path / "adaface.ckpt"),
                                      "--arch", "adaface_ir18", "--out", str(tmp_path / "adaface.onnx")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["max_abs_diff_normalised"] < 1e-4
    rgb = torch.randn(1, *INPUT_SHAPE)
    with torch.inference_mode():
        expected = model(rgb.flip(1))  # the raw AdaFace module takes BGR
    assert _max_abs_diff_normalised(_onnx_embeddings(tmp_path / "adaface.onnx", rgb), expected) < 1e-4
