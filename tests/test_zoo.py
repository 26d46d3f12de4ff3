"""Every registered backbone has its upstream checkpoint layout, embeds faces, and loads back
from a file in that layout through load_pretrained; the loader's errors; complexity figures."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from facerec.benchmarking.complexity import complexity, count_parameters
from facerec.cli import app
from facerec.models.backbones import INPUT_SHAPE, build_backbone, list_backbones, meta_backbone
from facerec.models.checkpoints import inspect_checkpoint, load_pretrained, save_checkpoint
from facerec.registry import PEER_BACKBONES

SPEC = json.loads((Path(__file__).resolve().parents[2] / "shared" / "specs" / "checkpoint_layouts.json").read_text())
# Keys of upstream files that are not the backbone: TopoFR keeps its loss's classifier on
# the backbone module, so the spec (and its parameter count) includes it.
CLASSIFIER_KEYS = {"topofr_r100": {"weight"}, "topofr_r200": {"weight"}}
# Architectures the spec does not list: TopoFR's r50 is arcface_torch's r50 layer for layer;
# the others have the blocks of the listed member of their family, at their own depth.
SAME_LAYOUT = {"topofr_r50": "iresnet50"}
SAME_FAMILY = {"iresnet34": "iresnet18", "adaface_ir18": "adaface_ir50", "adaface_ir34": "adaface_ir50",
               "vit_t": "vit_s", "vit_b": "vit_s", "vit_l": "vit_s", "transface_vit_b": "transface_vit_s"}
# Counted on upstream's own modules (AdaFace's net.py; arcface_torch's and TransFace's
# backbones with get_model's settings) for the models the spec does not list.
UPSTREAM_PARAM_COUNTS = {"adaface_ir18": 24020352, "adaface_ir34": 34134080, "vit_t": 19137792,
                         "vit_b": 113833472, "vit_l": 255684352, "transface_vit_b": 124471040}
# The smallest net of each backbone module (TopoFR's are IResNets): a training step on each
# keeps the suite fast on 2 CPU cores.
TRAINED = ["mobilefacenet", "iresnet18", "adaface_ir18", "vit_t"]
# The seed's table (ptflops): GFLOPs, Mparams, and the classifier rows (×512) its Mparams
# imply: TopoFR's figures exceed the backbone's by exactly 512×512.
SEED_FIGURES = {"adaface_ir101": (12.122, 65.151, 0), "topofr_r200": (23.485, 119.096, 512),
                "topofr_r100": (12.128, 65.418, 512), "transface_vit_l": (24.621, 271.630, 0),
                "transface_vit_s": (5.513, 86.661, 0), "iresnet100": (12.128, 65.156, 0),
                "adaface_ir50": (6.325, 43.586, 0)}


def upstream_file(arch: str, state_dict: dict[str, torch.Tensor]) -> dict:
    """``state_dict`` as upstream saves the family of ``arch``, classifier included."""
    if arch.startswith("adaface_"):  # a PyTorch-Lightning checkpoint
        tensors = {f"model.{key}": value for key, value in state_dict.items()}
        return {"epoch": 3, "global_step": 1200, "pytorch-lightning_version": "1.8.6",
                "state_dict": {**tensors, "head.kernel": torch.randn(512, 10)}}
    if arch.startswith("topofr_"):
        return {"weight": torch.randn(10, 512), **state_dict}
    if arch.startswith("transface_"):  # saved from a DataParallel-wrapped model
        return {f"module.{key}": value for key, value in state_dict.items()}
    return dict(state_dict)


def randomised(arch: str) -> torch.nn.Module:
    """An eval-mode ``arch`` whose every tensor is random, so that each key's weights reach the
    output (the initialisation leaves some at constants: IResNet zeroes each residual
    branch's last BN scale) and the output depends on the input. Also fast: the large ViTs'
    own initialisation takes seconds."""
    model = meta_backbone(arch).to_empty(device="cpu")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.dim() >= 2:  # convolution and linear weights, position embeddings
                tensor.normal_(0, 0.02, generator=generator)
            elif tensor.dim() == 1:  # norm scales, shifts and statistics (variances > 0), biases, slopes
                tensor.uniform_(0.5, 1.5, generator=generator)
            else:
                tensor.zero_()  # BN's batch counters
    return model.eval()


# Backbones whose published weights are a peer's file, not a torch checkpoint: tests/test_transfer.py
# loads the real file into them and compares with the peer.
UPSTREAM_CHECKPOINTS = [name for name in list_backbones() if name not in PEER_BACKBONES.values()]


@pytest.fixture(scope="module", params=UPSTREAM_CHECKPOINTS)
def embedded(request) -> tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]:
    """Each architecture built once (pytest groups the tests by it) with random weights, a
    batch of faces and its embeddings: batch 2 for the smallest models, 1 for the others."""
    name = request.param
    model = randomised(name)
    batch = 2 if count_parameters(model) < 25e6 else 1
    faces = torch.randn(batch, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return name, model, faces, model(faces)


def _per_block(keys) -> set[str]:
    return {re.sub(r"^(layer\d|body|blocks)\.\d+\.", r"\1.*.", key) for key in keys}


def test_state_dict_and_parameter_count_equal_the_upstream_checkpoint_less_its_classifier(embedded):
    name, model, _, _ = embedded
    ours = {key: list(value.shape) for key, value in model.state_dict().items()}
    if name in SAME_FAMILY:
        assert _per_block(ours) == _per_block(SPEC[SAME_FAMILY[name]]["state_dict"])
        if name in UPSTREAM_PARAM_COUNTS:
            assert count_parameters(model) == UPSTREAM_PARAM_COUNTS[name]
        return
    spec = SPEC[SAME_LAYOUT.get(name, name)]
    classifier = CLASSIFIER_KEYS.get(name, set())
    expected = {key: shape for key, shape in spec["state_dict"].items() if key not in classifier}
    assert list(ours.items()) == list(expected.items())  # in the checkpoint's order too
    classifier_count = sum(math.prod(spec["state_dict"][key]) for key in classifier)
    assert count_parameters(model) == spec["param_count"] - classifier_count


def test_forward_gives_one_finite_512_d_embedding_per_face(embedded):
    _, _, faces, embeddings = embedded
    assert embeddings.shape == (len(faces), 512) and torch.isfinite(embeddings).all()


def test_a_file_in_the_upstream_layout_loads_to_identical_embeddings_from_rgb(embedded, tmp_path):
    name, model, faces, embeddings = embedded
    torch.save(upstream_file(name, model.state_dict()), tmp_path / "upstream.pt")
    loaded = load_pretrained(name, tmp_path / "upstream.pt")
    (tmp_path / "upstream.pt").unlink()  # pytest keeps tmp_path: the zoo's files add up to 6 GB
    assert not loaded.training
    # The raw AdaFace module took ``faces`` as BGR; the loaded model takes RGB like every other
    # (and a missing flip would show: these weights make the embedding depend on the input).
    rgb = faces.flip(1) if name.startswith("adaface_") else faces
    with torch.inference_mode():
        assert torch.equal(loaded(rgb), embeddings)


@pytest.mark.parametrize("name", TRAINED)
def test_training_step_reaches_every_trainable_parameter(name):
    model = build_backbone(name, embedding_size=128).train()
    out = model(torch.randn(2, *INPUT_SHAPE))
    assert out.shape == (2, 128)
    out.square().mean().backward()
    # For vit_t this includes the mask token: training sends 10% of its tokens through it.
    for key, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key


def test_our_checkpoint_loads_as_saved_and_is_never_channel_flipped(tmp_path):
    for arch in ("mobilefacenet", "adaface_ir18"):  # our training feeds RGB, AdaFace's nets included
        model = build_backbone(arch, embedding_size=128).eval()
        save_checkpoint(tmp_path / f"{arch}.pt", model, arch, 128, identities=["a", "b"])
        faces = torch.randn(2, *INPUT_SHAPE)
        with torch.inference_mode():
            assert torch.equal(load_pretrained(None, tmp_path / f"{arch}.pt")(faces), model(faces))


@pytest.fixture(scope="module")
def mobilefacenet_state() -> dict[str, torch.Tensor]:
    return build_backbone("mobilefacenet").state_dict()


def test_a_missing_or_unexpected_key_is_an_error_naming_it(tmp_path, mobilefacenet_state):
    state = dict(mobilefacenet_state)
    state.pop("conv_sep.layers.0.weight")
    state["extra.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt: does not match mobilefacenet: missing keys "
                                         r"\[conv_sep\.layers\.0\.weight\], unexpected keys \[extra\.bias\]"):
        load_pretrained("mobilefacenet", tmp_path / "partial.pt")


def test_a_shape_that_differs_is_an_error_naming_the_key(tmp_path, mobilefacenet_state):
    torch.save({**mobilefacenet_state, "features.layers.2.weight": torch.zeros(128, 512)}, tmp_path / "small.pt")
    with pytest.raises(ValueError, match=r"features\.layers\.2\.weight \[128, 512\] \(expects \[512, 512\]\)"):
        load_pretrained("mobilefacenet", tmp_path / "small.pt")


def test_a_file_that_is_not_a_checkpoint_is_an_error_naming_it(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"notes\.pt: not a readable torch checkpoint"):
        load_pretrained("mobilefacenet", tmp_path / "notes.pt")
    torch.save({"epoch": 3, "conv1.weight": torch.zeros(1)}, tmp_path / "resume.pt")
    with pytest.raises(ValueError, match=r"resume\.pt: read as a plain checkpoint, but \[epoch\] are not tensors"):
        load_pretrained("iresnet18", tmp_path / "resume.pt")


class TrainerState:
    """Stands for the Python objects (callbacks, configs) that training frameworks pickle."""


def test_a_checkpoint_that_needs_arbitrary_unpickling_is_refused(tmp_path, mobilefacenet_state):
    torch.save({"state_dict": mobilefacenet_state, "callbacks": TrainerState()}, tmp_path / "trainer.ckpt")
    with pytest.raises(ValueError, match=r"trainer\.ckpt: holds Python objects besides tensors "
                                         r"\(such as .*TrainerState\), which a weights-only load refuses"):
        load_pretrained("mobilefacenet", tmp_path / "trainer.ckpt")


def test_an_upstream_file_without_an_architecture_is_an_error(tmp_path, mobilefacenet_state):
    torch.save(mobilefacenet_state, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"weights\.pt: a plain checkpoint does not record its architecture"):
        load_pretrained(None, tmp_path / "weights.pt")


def test_inspect_finds_the_layout_the_architectures_and_the_classifier(tmp_path):
    model = build_backbone("topofr_r50")
    torch.save(upstream_file("topofr_r50", model.state_dict()), tmp_path / "topofr.pt")
    record = inspect_checkpoint(tmp_path / "topofr.pt")
    assert record["layout"] == "plain" and record["extras"] == {"weight": [10, 512]}
    assert record["matches"] == ["iresnet50", "topofr_r50"]  # TopoFR's r50 has arcface_torch's keys
    assert record["mparams"] == pytest.approx((count_parameters(model) + 10 * 512) / 1e6)


def test_inspect_shows_how_a_file_differs_from_the_closest_architecture(tmp_path, mobilefacenet_state):
    state = {f"module.{key}": value for key, value in mobilefacenet_state.items() if key != "features.layers.2.weight"}
    torch.save(state, tmp_path / "partial.pt")
    result = CliRunner().invoke(app, ["zoo", "inspect", str(tmp_path / "partial.pt")])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["matches"] == [] and record["closest"] == "mobilefacenet"
    assert record["differences"] == {"missing": ["features.layers.2.weight"], "unexpected": [], "shapes": {}}


@pytest.mark.parametrize("arch", SEED_FIGURES)
def test_gflops_and_mparams_match_the_seed_table_within_1_percent(arch):
    gflops, mparams, classifier_rows = SEED_FIGURES[arch]
    cost = complexity(arch, classifier_parameters=classifier_rows * 512)
    assert cost.gflops == pytest.approx(gflops, rel=0.01)
    assert cost.mparams == pytest.approx(mparams, rel=0.01)


def test_zoo_list_prints_one_record_per_architecture():
    result = CliRunner().invoke(app, ["zoo", "list", "--json", "mobilefacenet", "iresnet100"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [record["arch"] for record in records] == ["mobilefacenet", "iresnet100"]
    assert records[1] == {"arch": "iresnet100", **vars(complexity("iresnet100"))}
    assert records[0]["mparams"] == pytest.approx(2.05952) and 0.4 < records[0]["gflops"] < 0.5
