"""Drift monitoring on real photos through the real detector: a real shift is found, a random
split of the same photos is not; the DVC stage's report and verdict; the face-monitor flow
failing or warning on drift against a real Prefect server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image, ImageEnhance
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.logging.handlers import APILogWorker

from conftest import CELEBA
from facerec.config import AlignParams, ComputeParams, ConfigError, DetectParams, MonitorParams, parse_params
from facerec.data.aligned import read_aligned_manifest
from facerec.faces.alignment import ARCFACE_TEMPLATE
from facerec.models.backbones import build_backbone
from facerec.pipeline.align import align
from facerec.pipeline.detect import detect
from facerec.quality.drift import COMPONENT, FEATURES, MonitorInputError, monitor_sets, pose_features, sample_faces
from facerec.runtime.io import write_table
from flows.monitor import DriftDetected, face_monitor

pytestmark = pytest.mark.timeout(1800)

IDENTITIES = 2  # the first CelebA identity folders: 46 real photos
# Darkening changes 3 of the 14 features by design (brightness, contrast, sharpness); the
# embeddings of the untrained model drift only by chance (2 to 4 of them). The set counts as
# drifted from a share its designed effect reaches alone, not from Evidently's default 0.5.
PARAMS = MonitorParams(drift_share=0.2)
ALL_FEATURES = [*FEATURES, *(COMPONENT.format(index + 1) for index in range(PARAMS.components))]


@pytest.fixture(scope="module")
def photo_sets(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """(detections, aligned) folders of real CelebA photos and of darkened copies of them, each
    through the real detect and align steps."""
    root = tmp_path_factory.mktemp("monitor")
    for folder in sorted(CELEBA.iterdir())[:IDENTITIES]:
        shutil.copytree(folder, root / "photos" / "images" / folder.name)
        (root / "darkened" / "images" / folder.name).mkdir(parents=True)
        for photo in sorted(folder.glob("*.jpg")):
            with Image.open(photo) as image:
                darkened = root / "darkened" / "images" / folder.name / photo.name
                ImageEnhance.Brightness(image).enhance(0.4).save(darkened, quality=95)
    params = DetectParams(cache=None)
    one = ComputeParams(workers=1)  # one detector process: for 69 photos, half the time of two
    for name in ("photos", "darkened"):
        detect(root / name / "images", root / name / "detections", params, one)
        align(root / name / "images", root / name / "detections", root / name / "aligned", AlignParams(), params)
    return {name: (root / name / "detections", root / name / "aligned") for name in ("photos", "darkened")}


def _split(aligned_dir: Path, out: Path, seed: int) -> tuple[Path, Path]:
    """Two aligned folders holding a seeded random half each of ``aligned_dir``'s faces."""
    faces = read_aligned_manifest(aligned_dir)
    order = np.random.default_rng(seed).permutation(len(faces))
    halves = []
    for number, rows in enumerate((order[:len(order) // 2], order[len(order) // 2:])):
        half = out / f"half{number + 1}"
        shutil.copytree(aligned_dir, half)
        write_table(half / "manifest.parquet", faces.iloc[rows].reset_index(drop=True))
        halves.append(half)
    return halves[0], halves[1]


@pytest.fixture(scope="module")
def drift(photo_sets, tmp_path_factory) -> dict[str, dict]:
    """Drift summaries: darkened copies against the photos, and one random half of the photos
    against the other. The model is an untrained MobileFaceNet (seeded): the image and pose
    features do not depend on it, and its embeddings still move when the faces do."""
    torch.manual_seed(0)
    model = build_backbone("mobilefacenet").eval()
    detections, aligned = photo_sets["photos"]
    first, second = _split(aligned, tmp_path_factory.mktemp("split"), seed=0)
    return {"darkened": monitor_sets(photo_sets["photos"], photo_sets["darkened"], model, PARAMS)[1],
            "split": monitor_sets((detections, first), (detections, second), model, PARAMS)[1]}


def test_darkened_copies_of_real_photos_drift_in_brightness_and_not_in_head_pose(drift):
    summary = drift["darkened"]
    assert summary["dataset_drift"] and summary["drifted_share"] >= PARAMS.drift_share
    assert list(summary["feature_drift"]) == ALL_FEATURES
    features = summary["feature_drift"]
    for name in ("brightness", "contrast", "sharpness"):
        assert features[name]["drift_detected"], features[name]
        assert features[name]["current_mean"] < 0.6 * features[name]["reference_mean"]
    # The same faces in the same photos: their size and pose did not change.
    assert not any(features[name]["drift_detected"] for name in ("face_size", "yaw", "roll"))
    assert summary["reference"]["faces"] == summary["reference"]["sampled"] >= 30  # faces found in 46 photos


def test_a_random_split_of_the_same_real_photos_does_not_drift(drift):
    summary = drift["split"]
    assert not summary["dataset_drift"] and summary["drifted_share"] < PARAMS.drift_share
    assert abs(summary["reference"]["faces"] - summary["current"]["faces"]) <= 1


def test_head_pose_proxies_are_zero_for_a_frontal_face_and_follow_a_rotation():
    angle = np.radians(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    frontal = ARCFACE_TEMPLATE - ARCFACE_TEMPLATE.mean(axis=0)
    turned = frontal.copy()
    turned[2, 0] += 0.2 * np.linalg.norm(frontal[1] - frontal[0])  # the nose a fifth of the eye distance aside
    pose = pose_features(np.stack([frontal, 3 * frontal @ rotation.T, turned]))
    assert pose["yaw"].tolist() == pytest.approx([0.0, 0.0, 0.2], abs=1e-3)
    assert pose["roll"].tolist() == pytest.approx([-0.32, 9.68, -0.32], abs=0.01)  # the template's eyes tilt a little
    assert pose["pitch"].tolist() == pytest.approx([0.495] * 3, abs=2e-3)  # the nose halfway down to the mouth


def test_missing_or_inconsistent_input_is_an_error_naming_the_file(photo_sets, tmp_path):
    detections, aligned = photo_sets["photos"]
    with pytest.raises(MonitorInputError, match=rf"{re.escape(str(tmp_path))}/manifest.parquet: not found"):
        sample_faces(detections, tmp_path, 10, 0)
    # Crops of photos these detections never saw: aligned from other detections.
    faces = read_aligned_manifest(aligned)
    write_table(tmp_path / "manifest.parquet", faces.assign(source="elsewhere/" + faces["source"]))
    with pytest.raises(MonitorInputError, match=rf"{len(faces)} aligned faces have no subject face in "
                                                rf"{re.escape(str(detections))}/manifest.parquet"):
        sample_faces(detections, tmp_path, 10, 0)


def test_the_monitored_set_must_be_one_of_the_data_sets():
    raw = yaml.safe_load((Path(__file__).parents[1] / "params.yaml").read_text())
    with pytest.raises(ConfigError, match="monitor.current_set: 'holiday' is not one of data.sets: train, lfw"):
        parse_params({**raw, "monitor": {"current_set": "holiday"}})
    with pytest.raises(ConfigError, match="monitor.current_set: 'train' is data.train_set"):
        parse_params({**raw, "monitor": {"current_set": "train"}})


def test_evidently_sends_no_usage_data_once_facerec_is_imported(monkeypatch):
    from evidently.telemetry import event_logger

    from facerec.runtime.offline import silence_network

    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    assert event_logger.is_enabled()  # the switch is what stops it
    silence_network()
    assert not event_logger.is_enabled()


# --- the face-monitor flow against a real Prefect server -----------------------------------

STAND_IN_STAGE = '''\
"""Stand-in monitor stage: publish, as the real one does, the drift result in result.json."""
import shutil
from pathlib import Path

Path("metrics/monitoring").mkdir(parents=True, exist_ok=True)
shutil.copy("result.json", "metrics/monitoring/drift.json")
'''

DVC_YAML = """\
stages:
  monitor:
    cmd: python monitor.py
    deps:
      - monitor.py
      - result.json
    params:
      - monitor
    metrics:
      - metrics/monitoring/drift.json:
          cache: false
"""


def _monitor_project(root: Path, result: dict, on_drift: str) -> Path:
    """A git + DVC project whose ``monitor`` stage publishes ``result`` as its drift.json."""
    project = root / "project"
    project.mkdir()
    (project / "monitor.py").write_text(STAND_IN_STAGE)
    (project / "result.json").write_text(json.dumps(result))
    (project / "dvc.yaml").write_text(DVC_YAML)
    params = {"data": {"sets": {"train": {"images": "photos/train"}, "new": {"images": "photos/new"}}},
              "train": {"model_name": "tiny", "epochs": 1}, "monitor": {"current_set": "new", "on_drift": on_drift}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for command in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(command, cwd=project, check=True)
    (project / ".dvc" / "config").write_text("[core]\n    analytics = false\n")
    return project


@pytest.fixture
def prefect(client: SyncPrefectClient) -> Iterator[SyncPrefectClient]:  # noqa: F811
    """The Prefect client; afterwards, the runs' logs are sent while the module's server still
    runs (else Prefect's log worker retries them against the stopped server for a minute)."""
    yield client
    APILogWorker.drain_all(timeout=30)


def _artifacts(client: SyncPrefectClient, flow_run_id) -> dict[str, str]:
    artifacts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {artifact.key: artifact.data for artifact in artifacts}


@pytest.mark.parametrize("on_drift", ["fail", "warn"])
def test_drift_fails_the_flow_run_or_completes_it_with_a_warning(on_drift, drift, prefect, tmp_path):
    project = _monitor_project(tmp_path, drift["darkened"], on_drift)

    state = face_monitor(project=str(project), return_state=True)

    flow_run = prefect.read_flow_run(state.state_details.flow_run_id)
    artifacts = _artifacts(prefect, flow_run.id)
    assert "drift detected" in artifacts["drift-summary"] and "| brightness | yes |" in artifacts["drift-summary"]
    if on_drift == "fail":
        assert flow_run.state.is_failed(), flow_run.state
        with pytest.raises(DriftDetected, match="brightness"):
            state.result()
        assert "drift-warning" not in artifacts
    else:
        assert flow_run.state.is_completed(), flow_run.state
        assert state.result() == drift["darkened"]
        assert "brightness" in artifacts["drift-warning"]


def test_without_drift_the_flow_completes_with_only_the_summary(drift, prefect, tmp_path):
    project = _monitor_project(tmp_path, drift["split"], "fail")

    state = face_monitor(project=str(project), return_state=True)

    flow_run = prefect.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.state.is_completed(), flow_run.state
    artifacts = _artifacts(prefect, flow_run.id)
    assert set(artifacts) == {"drift-summary"} and "no drift" in artifacts["drift-summary"]
    assert state.result() == drift["split"]
