"""The YOLO detector on real ultralytics models trained here to find real LFW faces.

No face weights can be downloaded, so the module trains its own: yolo11n-pose built from
ultralytics' bundled config with ``kpt_shape`` [5, 3], for 150 steps (≈45 s on one thread) on
LFW faces pasted at random places and sizes onto plain or noise backgrounds, each labelled
with its paste rectangle and the 5 MTCNN landmarks of the face. The box-only model is the same
network without its keypoint branch (yolo11n's Detect head is the Pose head minus ``cv4``), so
it finds the same faces. Both are saved as ultralytics checkpoints and loaded by path.
Held-out images paste faces of people the models never saw.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import LFW
from facerec.config import AlignParams, ComputeParams, DetectParams
from facerec.data.aligned import decode_crop
from facerec.faces.alignment import align_manifest
from facerec.faces.detection import detect_photos
from facerec.faces.detectors.mtcnn import MtcnnDetector
from facerec.faces.detectors.yolo import CONFIDENCE_FLOOR, YoloDetector
from facerec.runtime.offline import OFFLINE_ENVIRONMENT

IMAGE_SIZE = 96  # px: training and inference size of the test models (3×3 cells at stride 32)
TRAIN_STEPS = 150  # fewer left most held-out confidences below 0.3 (100 steps: 0.04-0.32)
BATCH = 16
PEOPLE = sorted((LFW / "images").iterdir())[:60]
TRAIN_PEOPLE, HELD_OUT_PEOPLE = PEOPLE[:48], PEOPLE[48:]


class Models(NamedTuple):
    box: Path
    pose: Path


class Pasted(NamedTuple):
    image: np.ndarray  # RGB uint8
    box: np.ndarray  # x1, y1, x2, y2 pixel edges of the pasted face
    landmarks: np.ndarray  # 5×2 pixel centres, ArcFace order


@pytest.fixture(scope="module", autouse=True)
def one_thread_and_own_ultralytics_folder(tmp_path_factory):
    """One torch thread (the CPU is shared; two threads under load ran 10× slower here), and
    ultralytics' settings in a temporary folder rather than the repository's .ultralytics."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnDetector:
    return MtcnnDetector(40, (0.6, 0.7, 0.7))


def _face_crops(people: list[Path], mtcnn: MtcnnDetector) -> list[tuple[np.ndarray, np.ndarray]]:
    """The MTCNN face box of each person's first LFW photo, cut out, with its 5 landmarks in
    the cut-out's pixel-centre coordinates."""
    photos = [np.asarray(Image.open(sorted(person.glob("*.jpg"))[0]).convert("RGB")) for person in people]
    crops = []
    for photo, faces in zip(photos, mtcnn.detect_batch(photos)):
        face = max(faces, key=lambda face: face.area)
        x1, y1 = (max(0, round(v)) for v in face.box[:2])
        x2, y2 = (round(v) for v in face.box[2:])
        crops.append((photo[y1:y2, x1:x2], face.landmarks - (x1, y1)))
    return crops


def _paste(crop: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Pasted:
    """The face resized to 30-70 % of a size×size plain-colour or noise image, anywhere in it."""
    if rng.random() < 0.5:
        image = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    else:
        image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    height, width = crop.shape[:2]
    scale = rng.uniform(0.3, 0.7) * size / max(height, width)
    new_width, new_height = round(width * scale), round(height * scale)
    x, y = rng.integers(0, size - new_width), rng.integers(0, size - new_height)
    image[y:y + new_height, x:x + new_width] = cv2.resize(crop, (new_width, new_height), interpolation=cv2.INTER_AREA)
    factor = np.array([new_width / width, new_height / height])
    return Pasted(image, np.array([x, y, x + new_width, y + new_height], np.float32),
                  ((landmarks + 0.5) * factor - 0.5 + (x, y)).astype(np.float32))


def _training_batch(samples: list[Pasted]) -> dict[str, torch.Tensor]:
    """The batch layout ultralytics' losses read: RGB in [0, 1], one face per image, boxes as
    normalised centre-x, centre-y, width, height, keypoints normalised with visibility 2."""
    boxes = np.stack([sample.box for sample in samples]) / IMAGE_SIZE
    keypoints = np.stack([sample.landmarks for sample in samples]) / IMAGE_SIZE
    return {
        "img": torch.from_numpy(np.stack([sample.image for sample in samples])).permute(0, 3, 1, 2).float() / 255,
        "batch_idx": torch.arange(len(samples), dtype=torch.float32),
        "cls": torch.zeros(len(samples), 1),
        "bboxes": torch.from_numpy(np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2,
                                                   boxes[:, 2:] - boxes[:, :2]], axis=1)).float(),
        "keypoints": torch.cat([torch.from_numpy(keypoints).float(), torch.full((len(samples), 5, 1), 2.0)], dim=2),
    }


def _train_face_pose_model(crops, rng: np.random.Generator) -> torch.nn.Module:
    """yolo11n-pose with 5 keypoints, trained from scratch on freshly pasted faces each step."""
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import PoseModel

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = PoseModel("yolo11n-pose.yaml", nc=1, data_kpt_shape=(5, 3), verbose=False)
        model.args = get_cfg()  # the loss reads its gains (box, cls, dfl, pose, kobj) from here
        optimiser = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=0.004, total_steps=TRAIN_STEPS,
                                                       pct_start=0.1)
        model.train()
        for _ in range(TRAIN_STEPS):
            samples = [_paste(*crops[i], rng) for i in rng.integers(0, len(crops), BATCH)]
            loss, _ = model.loss(_training_batch(samples))
            optimiser.zero_grad()
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimiser.step()
            schedule.step()
    model.criterion = None
    model.names = {0: "face"}
    return model.eval()


def _box_model(pose_model: torch.nn.Module) -> torch.nn.Module:
    """The pose network without its keypoint branch, as a yolo11n detection model."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel("yolo11n.yaml", nc=1, verbose=False)
    missing, _ = model.load_state_dict(pose_model.state_dict(), strict=False)
    assert not missing
    model.names = {0: "face"}
    return model.eval()


def _save_checkpoint(model: torch.nn.Module, path: Path, task: str) -> Path:
    """An ultralytics checkpoint as its trainer writes one: the module and its training arguments."""
    torch.save({"model": model, "train_args": {"task": task}}, path)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory, mtcnn) -> Models:
    folder = tmp_path_factory.mktemp("yolo_models")
    pose = _train_face_pose_model(_face_crops(TRAIN_PEOPLE, mtcnn), np.random.default_rng(0))
    return Models(box=_save_checkpoint(_box_model(pose), folder / "face_box.pt", "detect"),
                  pose=_save_checkpoint(pose, folder / "face_pose.pt", "pose"))


@pytest.fixture(scope="module")
def held_out(mtcnn) -> list[Pasted]:
    crops = _face_crops(HELD_OUT_PEOPLE, mtcnn)
    rng = np.random.default_rng(1)
    return [_paste(*crops[i % len(crops)], rng) for i in range(2 * len(crops))]


def _iou(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    return inter / (np.prod(a[2:] - a[:2]) + np.prod(b[2:] - b[:2]) - inter)


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_box_model_finds_each_held_out_face_and_takes_landmarks_from_the_landmarker(models, held_out, mtcnn):
    detector = YoloDetector(models.box, image_size=IMAGE_SIZE, landmarker=mtcnn)
    assert not detector.keypoints
    found = detector.detect_batch([sample.image for sample in held_out])
    assert len(found) == len(held_out)
    for sample, faces in zip(held_out, found):
        best = max(faces, key=lambda face: face.score)
        assert _iou(best.box, sample.box) > 0.5
        assert CONFIDENCE_FLOOR <= best.score <= 1
        boxes = np.array([face.box for face in faces], np.float32)
        expected, _ = mtcnn.landmarks_in_boxes(sample.image, boxes)
        np.testing.assert_array_equal(np.stack([face.landmarks for face in faces]), expected)
        assert best.landmarks.shape == (5, 2) and best.landmarks.dtype == np.float32
        x1, y1, x2, y2 = best.box
        assert ((best.landmarks >= (x1, y1)) & (best.landmarks <= (x2, y2))).all()


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_pose_model_landmarks_are_its_5_keypoints_in_arcface_order(models, held_out):
    # No landmarker: the landmarks can only come from the model's keypoints.
    detector = YoloDetector(models.pose, image_size=IMAGE_SIZE)
    assert detector.keypoints
    errors = []  # mean landmark distance from MTCNN's, as a fraction of the face's width
    for sample, faces in zip(held_out, detector.detect_batch([sample.image for sample in held_out])):
        best = max(faces, key=lambda face: face.score)
        assert _iou(best.box, sample.box) > 0.5
        assert best.landmarks.shape == (5, 2) and best.landmarks.dtype == np.float32
        errors.append(np.abs(best.landmarks - sample.landmarks).mean() / (sample.box[2] - sample.box[0]))
        left_eye, right_eye, nose, left_mouth, right_mouth = best.landmarks
        assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    # Measured after 150 steps: 0.03-0.13 of the width, median 0.055.
    assert max(errors) < 0.2 and np.median(errors) < 0.1


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_detect_batch_takes_rgb_and_agrees_with_ultralytics_on_the_bgr_photo(models, held_out):
    detector = YoloDetector(models.pose, image_size=IMAGE_SIZE)
    images = [sample.image for sample in held_out[:6]]
    ours = detector.detect_batch(images)
    theirs = detector.model.predict([cv2.cvtColor(image, cv2.COLOR_RGB2BGR) for image in images],
                                    imgsz=IMAGE_SIZE, conf=CONFIDENCE_FLOOR, device="cpu", verbose=False)
    for faces, result in zip(ours, theirs):
        np.testing.assert_allclose([face.box for face in faces], result.boxes.xyxy.numpy(), atol=1e-3)
        np.testing.assert_allclose([face.score for face in faces], result.boxes.conf.numpy(), atol=1e-6)
        np.testing.assert_allclose([face.landmarks for face in faces], result.keypoints.xy.numpy(), atol=1e-3)


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_photos_of_any_size_share_a_batch_and_faces_come_back_in_photo_pixels(models, held_out):
    sample = held_out[0]
    doubled = cv2.resize(sample.image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    wide = np.full((120, 170, 3), 128, np.uint8)
    wide[10:10 + IMAGE_SIZE, 60:60 + IMAGE_SIZE] = sample.image
    truth = [sample.box, sample.box * 2, sample.box + (60, 10, 60, 10)]
    detector = YoloDetector(models.pose, image_size=IMAGE_SIZE)
    for faces, box in zip(detector.detect_batch([sample.image, doubled, wide]), truth):
        assert _iou(max(faces, key=lambda face: face.score).box, box) > 0.5
    assert detector.detect_batch([]) == []


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_landmarks_in_boxes_are_the_landmarkers(models, held_out, mtcnn):
    detector = YoloDetector(models.box, image_size=IMAGE_SIZE, landmarker=mtcnn)
    boxes = np.array([held_out[0].box, [0, 0, IMAGE_SIZE, IMAGE_SIZE]], np.float32)
    for ours, theirs in zip(detector.landmarks_in_boxes(held_out[0].image, boxes),
                            mtcnn.landmarks_in_boxes(held_out[0].image, boxes)):
        np.testing.assert_array_equal(ours, theirs)


def test_missing_weights_are_an_error_naming_the_path_and_nothing_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # An official name ultralytics would fetch from GitHub is refused like any missing file.
    for weights in (tmp_path / "absent" / "face.pt", "yolo11n.pt"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(weights))):
            YoloDetector(weights, image_size=IMAGE_SIZE)
    assert list(tmp_path.iterdir()) == []


def test_a_file_that_is_not_a_yolo_model_is_an_error_naming_it(tmp_path):
    not_pickle = tmp_path / "photo.pt"
    not_pickle.write_bytes((LFW / "images" / "AJ_Cook" / "AJ_Cook_0001.jpg").read_bytes())
    state_dict = tmp_path / "state_dict.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), state_dict)
    other_module = tmp_path / "linear.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, other_module)
    onnx = tmp_path / "face.onnx"
    onnx.write_bytes(b"\x08\x07")
    for weights in (not_pickle, state_dict, other_module, onnx):
        with pytest.raises(ValueError, match=re.escape(str(weights))):
            YoloDetector(weights, image_size=IMAGE_SIZE)


def _untrained(config: str, tmp_path: Path, task: str, names: dict[int, str]) -> Path:
    from ultralytics.nn.tasks import ClassificationModel, DetectionModel, PoseModel

    build = {"detect": DetectionModel, "pose": PoseModel, "classify": ClassificationModel}[task]
    model = build(config, nc=len(names), verbose=False)
    model.names = names
    return _save_checkpoint(model.eval(), tmp_path / f"{task}_{len(names)}.pt", task)


@pytest.mark.parametrize("config, task, names, message", [
    ("yolo11n-pose.yaml", "pose", {0: "person"}, r"kpt_shape \[17, 3\]"),
    ("yolo11n.yaml", "detect", {0: "person", 1: "bicycle", 2: "car"}, r"3 classes \(person, bicycle, car\)"),
    ("yolo11n-cls.yaml", "classify", {0: "face", 1: "background"}, "a YOLO classify model"),
])
def test_models_that_are_not_face_detectors_are_rejected(tmp_path, config, task, names, message):
    weights = _untrained(config, tmp_path, task, names)
    with pytest.raises(ValueError, match=message):
        YoloDetector(weights, image_size=IMAGE_SIZE, landmarker=None)


def test_a_several_class_model_keeps_its_face_classes_and_a_box_model_needs_a_landmarker(tmp_path, mtcnn):
    weights = _untrained("yolo11n.yaml", tmp_path, "detect", {0: "person", 1: "Face", 2: "car"})
    assert YoloDetector(weights, image_size=IMAGE_SIZE, landmarker=mtcnn).classes == [1]
    with pytest.raises(ValueError, match="landmarker"):
        YoloDetector(weights, image_size=IMAGE_SIZE)


NO_NETWORK_RUN = """
import json, socket, sys

attempts = []


def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] or args))
    raise OSError("network refused by the test")


socket.socket.connect = socket.socket.connect_ex = refuse
socket.getaddrinfo = socket.create_connection = refuse

import cv2
from facerec.faces.detectors.mtcnn import MtcnnDetector
from facerec.faces.detectors.yolo import YoloDetector

box, pose, photo = sys.argv[1:]
image = cv2.cvtColor(cv2.imread(photo), cv2.COLOR_BGR2RGB)
faces = [len(YoloDetector(box, image_size=96, landmarker=MtcnnDetector(40, (0.6, 0.7, 0.7))).detect_batch([image])[0]),
         len(YoloDetector(pose, image_size=96).detect_batch([image])[0])]
try:
    YoloDetector("yolo11n.pt")
except FileNotFoundError as error:
    missing = str(error)
print(json.dumps({"attempts": attempts, "faces": faces, "missing": missing}))
"""


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_detector_works_with_the_network_refused_and_keeps_ultralytics_settings_in_the_project(
        tmp_path, models, held_out):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    home.mkdir()
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), cv2.cvtColor(held_out[0].image, cv2.COLOR_RGB2BGR))
    # Nothing inherited: the code alone must keep ultralytics offline and in the project.
    env = {key: value for key, value in os.environ.items()
           if key not in OFFLINE_ENVIRONMENT and key not in ("YOLO_CONFIG_DIR", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", NO_NETWORK_RUN, str(models.box), str(models.pose), str(photo)],
                            cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["attempts"] == []
    assert min(report["faces"]) >= 1
    assert "yolo11n.pt" in report["missing"]
    settings = project / ".ultralytics" / "Ultralytics" / "settings.json"
    assert json.loads(settings.read_text())["sync"] is False
    assert (settings.parent / "Arial.ttf").stat().st_size > 100_000
    assert (settings.parent / "Arial.Unicode.ttf").is_file()
    assert not (home / ".config" / "Ultralytics").exists()
    assert sorted(path.name for path in project.iterdir()) == [".ultralytics"]


@pytest.mark.slow  # trains small YOLO models first (~1 min)
def test_the_detect_and_align_steps_run_with_the_yolo_backend(models, held_out, tmp_path):
    photos = tmp_path / "photos"
    for index, pasted in enumerate(held_out[:8]):
        (photos / f"person{index % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pasted.image).save(photos / f"person{index % 2}" / f"{index}.png")
    params = DetectParams(backend="yolo", weights=models.pose, yolo_image_size=IMAGE_SIZE, min_score=0.25,
                          min_image_side=IMAGE_SIZE, cache=tmp_path / "cache.sqlite")
    detected = detect_photos(photos, params, ComputeParams())
    assert detected.rejects.empty and detected.manifest["subject"].sum() == 8
    aligned, rejects = align_manifest(photos, detected.manifest, AlignParams(), params)
    assert rejects.empty and len(aligned) == 8
    assert all(decode_crop(jpeg).shape == (112, 112, 3) for jpeg in aligned["jpeg"])
    # Other weights are another detector: the cache does not answer for them.
    assert detect_photos(photos, params.model_copy(update={"weights": models.box}), ComputeParams()).cached == 0
