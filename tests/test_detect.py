"""The detect step on real photos: every file accounted for, every face recorded, reruns cached."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from awkward_corpus import ACCEPTED, make_awkward_corpus, make_photo_list
from PIL import Image

from conftest import LFW
from facerec.config import ComputeParams, DetectParams
from facerec.faces.detection import detect_photos
from facerec.faces.detectors.mtcnn import MtcnnDetector
from facerec.faces.manifest import subjects

LFW_PHOTOS = sorted((LFW / "images").glob("A*/*.jpg"))
LOCAL = ComputeParams()


def _params(tmp_path: Path, **changes) -> DetectParams:
    return DetectParams(cache=tmp_path / "cache.sqlite", batch_size=8, **changes)


def _outcomes(result) -> dict[str, str]:
    """Each input path's fate: "accepted" or its reject category."""
    fates = dict.fromkeys(subjects(result.manifest)["path"], ACCEPTED)
    for path, reason in zip(result.rejects["path"], result.rejects["reason"]):
        assert path not in fates, f"{path} is both accepted and rejected"
        fates[path] = reason.split(":")[0]
    return fates


def test_every_awkward_file_is_accepted_or_rejected_with_its_reason(tmp_path):
    expected = make_awkward_corpus(tmp_path / "photos")
    result = detect_photos(tmp_path / "photos", _params(tmp_path), LOCAL)
    assert _outcomes(result) == expected
    accepted = subjects(result.manifest)
    assert accepted["score"].min() >= 0.9
    # The EXIF-rotated photo is turned upright before detection: eyes above the mouth.
    for row in accepted.itertuples():
        assert row.lm0_y < row.lm3_y and row.lm1_y < row.lm4_y and row.lm0_x < row.lm1_x, row.path


def test_a_csv_photo_list_is_a_source_like_a_folder(tmp_path):
    outcomes = make_awkward_corpus(tmp_path / "photos")
    (tmp_path / "lists").mkdir()
    expected = make_photo_list(tmp_path / "lists" / "photos.csv", tmp_path / "photos", outcomes)
    result = detect_photos(tmp_path / "lists" / "photos.csv", _params(tmp_path), LOCAL)
    fates = _outcomes(result)
    # Duplicate rows are rejected, so the same path may be in both tables: count rows instead.
    assert len(subjects(result.manifest)) + len(result.rejects) == len(expected)
    assert {path: fates[path] for path in expected if expected[path] != "duplicate"} == \
           {path: fate for path, fate in expected.items() if fate != "duplicate"}


def _two_faces(tmp_path: Path) -> Path:
    """A photo of two real people: a small face in the centre, a larger one at the right edge."""
    big = Image.open(LFW_PHOTOS[0]).resize((300, 300))
    small = Image.open(LFW_PHOTOS[10]).resize((200, 200))
    canvas = Image.new("RGB", (700, 320), (128, 128, 128))
    canvas.paste(small, (250, 60))
    canvas.paste(big, (400, 10))
    path = tmp_path / "photos" / "someone" / "two.jpg"
    path.parent.mkdir(parents=True)
    canvas.save(path, quality=95)
    return path


@pytest.mark.parametrize("rule,subject_centre_x", [("largest", 550), ("central", 350)])
def test_every_face_is_recorded_and_the_rule_picks_the_subject(tmp_path, rule, subject_centre_x):
    _two_faces(tmp_path)
    manifest = detect_photos(tmp_path / "photos", _params(tmp_path, subject_rule=rule), LOCAL).manifest
    assert len(manifest) == 2 and manifest["faces"].tolist() == [2, 2]
    assert manifest["face"].tolist() == [0, 1] and manifest["subject"].sum() == 1
    subject = manifest[manifest["subject"]].iloc[0]
    assert abs((subject["x1"] + subject["x2"]) / 2 - subject_centre_x) < 40


def _tight_grey_crops(folder: Path, count: int = 10) -> None:
    """92×112 grey portraits cut close around real faces, like the AT&T face database."""
    detector = MtcnnDetector(40, (0.6, 0.7, 0.7))
    folder.mkdir(parents=True)
    for photo in LFW_PHOTOS[:4 * count:4]:
        image = np.asarray(Image.open(photo).convert("RGB"))
        landmarks = max(detector.detect(image), key=lambda face: face.area).landmarks
        (cx, cy), width = landmarks.mean(axis=0), np.ptp(landmarks[:, 0])
        box = (int(cx - width), int(cy - 1.45 * width), int(cx + width), int(cy + width))
        Image.fromarray(image).crop(box).convert("L").resize((92, 112)).save(folder / photo.name)


@pytest.mark.slow  # a second detector run over tight crops (~20 s)
def test_tight_crops_are_accepted_whole_when_the_option_is_on(tmp_path):
    _tight_grey_crops(tmp_path / "crops" / "person")
    strict = detect_photos(tmp_path / "crops", _params(tmp_path), LOCAL)
    lenient = detect_photos(tmp_path / "crops", _params(tmp_path, whole_image_fallback=True), LOCAL)
    missed = set(strict.rejects["path"])
    assert missed and strict.rejects["reason"].str.startswith("no face found").all()
    assert lenient.rejects.empty and len(subjects(lenient.manifest)) == 10
    whole = lenient.manifest[lenient.manifest["whole_image"]]
    assert set(whole["path"]) == missed
    assert (whole[["x1", "y1", "x2", "y2"]].to_numpy() == [0, 0, 92, 112]).all()
    # Landmarks from the landmarker sit where a face's features are in such a crop.
    assert (whole["lm0_x"] < 46).all() and (whole["lm1_x"] > 46).all()
    assert (whole["lm0_y"] < whole["lm2_y"]).all() and (whole["lm2_y"] < whole["lm3_y"]).all()


def test_a_rerun_detects_only_new_photos(tmp_path):
    photos = tmp_path / "photos"
    for photo in LFW_PHOTOS[:12]:
        (photos / photo.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy2(photo, photos / photo.parent.name / photo.name)
    params = _params(tmp_path)
    first = detect_photos(photos, params, LOCAL)
    assert first.cached == 0
    shutil.copy2(LFW_PHOTOS[20], photos / LFW_PHOTOS[0].parent.name / "added.jpg")
    second = detect_photos(photos, params, LOCAL)
    assert second.cached == 12 and len(subjects(second.manifest)) == 13
    pd.testing.assert_frame_equal(second.manifest[second.manifest["path"] != f"{LFW_PHOTOS[0].parent.name}/added.jpg"]
                                  .reset_index(drop=True), first.manifest)
    # Other detector settings are other results: nothing is reused.
    assert detect_photos(photos, _params(tmp_path, min_face_size=60), LOCAL).cached == 0


def test_our_cascade_finds_what_facenet_pytorch_mtcnn_finds():
    from facenet_pytorch import MTCNN

    images = [np.asarray(Image.open(path).convert("RGB")) for path in LFW_PHOTOS[:48]]
    reference = MTCNN(min_face_size=40, keep_all=True, device="cpu")
    ours = MtcnnDetector(40, (0.6, 0.7, 0.7)).detect_batch(images)

    def inside(landmarks: np.ndarray, image: np.ndarray) -> bool:
        return bool((landmarks >= 8).all() and (landmarks[:, 0] < image.shape[1] - 8).all()
                    and (landmarks[:, 1] < image.shape[0] - 8).all())

    distances = []
    for image, faces in zip(images, ours):
        boxes, scores, points = reference.detect(image, landmarks=True)
        # facenet-pytorch truncates box corners before cropping: its landmarks sit about one
        # pixel right of and below the pixel centres (measured: +1.0 px on each axis).
        theirs = [np.asarray(p, np.float64) - 1.0 for p, s in zip(points, scores) if s >= 0.9]
        mine = [face.landmarks for face in faces if face.score >= 0.9]
        # Faces cut by the photo's edge differ by design (zero padding, not stretching).
        for found, other in ((mine, theirs), (theirs, mine)):
            for landmarks in found:
                if inside(landmarks, image):
                    distances.append(min((np.linalg.norm(landmarks - o, axis=1).mean() for o in other),
                                         default=np.inf))
    assert len(distances) >= 2 * len(images)
    # The two resample candidate crops differently; on faces ~100 px wide they agree to ~1 %.
    assert np.median(distances) < 2.0 and np.percentile(distances, 90) < 4.0
