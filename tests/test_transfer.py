"""Learning from published models on the small project's real faces: SFace's file imported as
a torch backbone, training started from it (frozen, imprinted, kept as it is), the teacher
stage and distillation, and the whitening map that loading applies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from facerec.config import Params, TrainParams, load_params
from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.evaluation.embedding import embed_crops
from facerec.models.adaptation import EmbeddingMap
from facerec.models.backbones import build_backbone
from facerec.models.checkpoints import load_checkpoint
from facerec.models.peers.load import load_peer
from facerec.models.peers.photos import photo_faces
from facerec.models.peers.sface import sface_crop, sface_state_dict
from facerec.pipeline.teacher import read_teacher, teacher_embeddings
from facerec.runtime.io import read_table
from facerec.training import loop, selection
from facerec.training.adaptation import fit_whitening
from facerec.training.distillation import DistillationLoss
from facerec.training.loop import train_model
from facerec.training.selection import validation_embeddings
from facerec.training.transfer import initial_weights


def _settings(project, **train) -> Params:
    params = load_params(project / "params.yaml")
    return params.model_copy(update={"train": TrainParams.model_validate({**params.train.model_dump(), **train})})


@pytest.fixture(scope="module")
def sface() -> torch.nn.Module:
    model = build_backbone("sface").eval()
    model.load_state_dict(sface_state_dict())
    return model


def test_the_imported_sface_gives_the_published_files_embeddings_on_real_faces(small_project, sface):
    detections = read_table(small_project / "data" / "detections" / "lfw" / "manifest.parquet")
    settings = load_params(small_project / "params.yaml")
    paths = detections.loc[detections["subject"], "path"].tolist()[:6]
    faces = list(photo_faces(settings.data.sets["lfw"].images, detections, paths, settings.detect_params("lfw")))
    peer = load_peer("sface_2021dec")
    bgr = np.stack([sface_crop(face) for face in faces]).transpose(0, 3, 1, 2)
    published = peer._session.run(None, {"data": np.ascontiguousarray(bgr)})[0]  # one pass, no mirror
    ours_input = torch.from_numpy(np.ascontiguousarray(bgr[:, ::-1])) / 127.5 - 1.0  # RGB, our convention
    with torch.inference_mode():
        ours = sface(ours_input).numpy()
    np.testing.assert_allclose(ours, published, atol=1e-4, rtol=1e-4)


def test_zero_epochs_keep_the_started_from_weights_and_fit_the_whitening_map(small_project, tmp_path, monkeypatch):
    settings = _settings(small_project, epochs=0, adaptation="whitening")
    aligned = small_project / "data" / "aligned" / "train"
    embedded = []

    def counting_embed_crops(model, crops, *args, **kwargs):
        embedded.append(len(crops))
        return embed_crops(model, crops, *args, **kwargs)

    monkeypatch.setattr(loop, "embed_crops", counting_embed_crops)
    monkeypatch.setattr(selection, "embed_crops", counting_embed_crops)
    result = train_model(aligned, read_aligned_manifest(aligned), settings.train, tmp_path / "model.pt",
                         initial_weights=initial_weights(settings))
    summary = result.summary
    # Each face is embedded once per view: the validation people once (the map's score reuses
    # their embeddings), the training faces and their mirror images once each for the fit.
    held_out = len(read_aligned_manifest(aligned)) - summary["faces"]
    assert embedded == [held_out, summary["faces"], summary["faces"]]
    assert summary["steps"] == 0 and summary["init_from"] == "sface_2021dec"
    model, checkpoint = load_checkpoint(tmp_path / "model.pt")
    published = sface_state_dict()
    assert all(torch.equal(checkpoint.state_dict[key], published[key]) for key in published)
    kept = summary["validation_with_adaptation"] > summary["validation_without_adaptation"]
    assert isinstance(model, EmbeddingMap) == kept == (summary["adaptation"] == "whitening")
    assert (checkpoint.adaptation is not None) == kept


def test_the_maps_score_from_kept_embeddings_is_the_score_of_embedding_through_the_map(small_project, sface):
    """Why the adaptation fit may score the map on the validation people's embeddings by the
    backbone alone: the map's arithmetic on them gives exactly what embedding through it gives."""
    aligned = small_project / "data" / "aligned" / "train"
    manifest = read_aligned_manifest(aligned).iloc[:300]  # more than one batch
    crops = load_crops(aligned, manifest["path"].tolist())
    embeddings = validation_embeddings(sface, crops)
    mean, projection = fit_whitening(embeddings, manifest["identity"].to_numpy())
    adapted = EmbeddingMap(sface, mean, projection)
    assert np.array_equal(loop._mapped(embeddings, adapted), validation_embeddings(adapted, crops))


def test_a_frozen_backbone_gets_no_gradient_and_so_no_momentum_until_it_is_released():
    params = TrainParams(model_name="m", backbone="sface", embedding_size=128, epochs=1, lr=0.1, warmup_epochs=0.0,
                         finetune={"frozen_epochs": 0.5})
    learner = loop._build_learner(params, 5, 4, torch.device("cpu"), 0, 1, None, None)  # 4 steps an epoch: 2 frozen
    images = torch.randn(4, 3, 112, 112).contiguous(memory_format=torch.channels_last)
    labels = torch.arange(4)
    backbone, head = list(learner.model.parameters()), list(learner.head.parameters())
    before = [parameter.detach().clone() for parameter in backbone]
    for _ in range(2):
        learner.step(images, labels)
        assert all(parameter.grad is None and parameter not in learner.optimizer.state for parameter in backbone)
        assert all(parameter.grad is not None for parameter in head)
    assert all(torch.equal(parameter, old) for parameter, old in zip(backbone, before))
    learner.step(images, labels)  # released: the backbone learns, its momentum starting from rest
    assert all(parameter.grad is not None for parameter in backbone)
    assert not all(torch.equal(parameter, old) for parameter, old in zip(backbone, before))


def test_whitening_makes_the_within_person_spread_of_real_embeddings_isotropic(small_project, sface):
    aligned = small_project / "data" / "aligned" / "train"
    manifest = read_aligned_manifest(aligned)
    with torch.inference_mode():
        embeddings = torch.nn.functional.normalize(sface(load_crops(aligned, manifest["path"].tolist()).float()
                                                         / 127.5 - 1.0)).numpy()
    identities = manifest["identity"].to_numpy()
    mean, projection = fit_whitening(embeddings, identities)
    mapped = (embeddings - mean.numpy()) @ projection.numpy()
    within = mapped - pd.DataFrame(mapped).groupby(identities).transform("mean").to_numpy()
    spread = np.linalg.eigvalsh(within.T @ within / len(within))
    before = np.linalg.eigvalsh(np.cov((embeddings - pd.DataFrame(embeddings).groupby(identities)
                                        .transform("mean").to_numpy()).T))
    # The map flattens the spectrum of how one person's faces vary (Ledoit-Wolf shrinks it on few faces).
    assert spread.max() / spread.min() < (before.max() / max(before.min(), 1e-12)) / 2
    assert abs(mapped.mean(axis=0)).max() < 1e-4  # centred on the training faces


def test_a_frozen_backbone_keeps_its_weights_while_the_imprinted_head_learns(small_project, tmp_path):
    settings = _settings(small_project, epochs=1, batch_size=32, adaptation="none",
                         finetune={"frozen_epochs": 1.0, "head_init": "class_means"})
    aligned = small_project / "data" / "aligned" / "train"
    result = train_model(aligned, read_aligned_manifest(aligned), settings.train, tmp_path / "model.pt",
                         initial_weights=initial_weights(settings))
    _, checkpoint = load_checkpoint(tmp_path / "model.pt")
    published = sface_state_dict()
    parameters = dict(build_backbone("sface").named_parameters())
    assert result.summary["steps"] >= 3
    assert all(torch.equal(checkpoint.state_dict[key], published[key]) for key in parameters)
    # Imprinted centres start where each person's faces are: the first step already classifies
    # most training faces (a random head would be near chance among the people).
    assert result.history["train_accuracy"].iloc[0] > 0.5


@pytest.mark.parametrize("loss", ["cosine", "l2"])
def test_a_student_learns_the_teachers_embeddings_from_the_teacher_stage(small_project, tmp_path, loss):
    settings = _settings(small_project, backbone="mobilefacenet", embedding_size=512, init_from=None, epochs=2,
                         batch_size=16, teacher="sface_2021dec", adaptation="none", validation_identities=0,
                         distill={"loss": loss, "weight": 1.0, "margin_weight": 0.0}, warmup_epochs=0.0,
                         lr=0.05, finetune={"frozen_epochs": 0.0})
    aligned = small_project / "data" / "aligned" / "train"
    detections = small_project / "data" / "detections" / "train"
    table = teacher_embeddings(settings, aligned, detections)
    manifest = read_aligned_manifest(aligned)
    assert sorted(table.index) == sorted(manifest["path"]) and table.shape[1] == 128
    np.testing.assert_allclose(np.linalg.norm(table.to_numpy(), axis=1), 1.0, atol=1e-5)
    result = train_model(aligned, manifest, settings.train, None, teacher=table)
    losses = result.history["loss"].to_numpy()
    assert np.isfinite(losses).all() and "final_train_accuracy" not in result.summary
    steps = len(losses) // 2
    assert losses[steps:].mean() < losses[:steps].mean()  # the second epoch is closer to the teacher


def test_the_relational_loss_pulls_a_students_similarities_towards_the_teachers(small_project):
    # On one fixed batch of real faces, so that a few steps show the direction of its gradient.
    settings = _settings(small_project, teacher="sface_2021dec")
    aligned = small_project / "data" / "aligned" / "train"
    table = teacher_embeddings(settings, aligned, small_project / "data" / "detections" / "train").iloc[:32]
    images = load_crops(aligned, table.index.tolist()).float() / 127.5 - 1.0
    targets = torch.from_numpy(table.to_numpy())
    torch.manual_seed(0)
    student = build_backbone("mobilefacenet", embedding_size=512).train()
    loss = DistillationLoss("similarity", 512, 128)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        value = loss(student(images), targets)
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses


def test_the_teacher_stage_output_is_checked_against_the_params(small_project):
    folder = small_project / "data" / "teacher"
    info = yaml.safe_load((folder / "teacher.json").read_text())
    assert info == {"teacher": None, "faces": 0, "embedding_size": 0}
    assert read_teacher(folder, None) is None
    with pytest.raises(ValueError, match="holds the embeddings of None, not train.teacher 'dlib_resnet_v1'"):
        read_teacher(folder, "dlib_resnet_v1")


def test_distillation_losses_measure_what_they_name():
    generator = torch.Generator().manual_seed(0)
    teacher = torch.randn(8, 128, generator=generator)
    same = DistillationLoss("cosine", 128, 128)
    assert same.projection is None and same(teacher * 3, teacher).item() == pytest.approx(0, abs=1e-6)
    assert DistillationLoss("l2", 128, 128)(-teacher, teacher).item() == pytest.approx(4.0, abs=1e-5)
    # Relational: any rotation of the teacher's space has the same similarities, so no loss.
    rotation, _ = torch.linalg.qr(torch.randn(128, 128, generator=generator))
    relational = DistillationLoss("similarity", 512, 128)
    assert relational.projection is None
    assert relational(teacher @ rotation, teacher).item() == pytest.approx(0, abs=1e-6)
    assert DistillationLoss("cosine", 512, 128).projection.weight.shape == (128, 512)
