"""A photo's detections depend on that photo and the detector settings only: not on which
photos share its batch, how many workers run (compute.workers), or whether the cache answered.
(Which engine runs them: tests/test_engine.py.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import CELEBA, LFW
from facerec.config import ComputeParams, DetectParams
from facerec.faces.detection import detect_photos
from facerec.faces.detectors.mtcnn import MtcnnDetector
from facerec.runtime.io import write_table

# 31 LFW photos of 20 people (some with 2 or 4 photos), all 250×250.
LFW_FOLDERS = sorted((LFW / "images").iterdir())[:20]
# Photos of another size (about 300×400), so that a batch mixes image sizes.
CELEBA_PHOTOS = sorted(min(CELEBA.iterdir()).glob("*.jpg"))[:3]


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A real photo set: the LFW folders, the CelebA photos as one more identity, a
    truncated JPEG (rejected when decoded) and a blank grey photo (no face found)."""
    root = tmp_path_factory.mktemp("determinism") / "photos"
    for folder in LFW_FOLDERS:
        shutil.copytree(folder, root / folder.name)
    (root / "celeba_person").mkdir()
    for photo in CELEBA_PHOTOS:
        shutil.copy2(photo, root / "celeba_person" / photo.name)
    (root / "nobody").mkdir()
    data = CELEBA_PHOTOS[0].read_bytes()
    (root / "nobody" / "truncated.jpg").write_bytes(data[:len(data) // 3])
    Image.new("RGB", (250, 250), (128, 128, 128)).save(root / "nobody" / "grey.jpg")
    return root


def test_a_photo_gets_the_same_faces_whatever_photos_share_its_detector_call():
    paths = [*sorted(LFW_FOLDERS[5].glob("*.jpg")), *CELEBA_PHOTOS, *sorted(LFW_FOLDERS[14].glob("*.jpg"))]
    images = [np.asarray(Image.open(path).convert("RGB")) for path in paths]
    detector = MtcnnDetector(40, (0.6, 0.7, 0.7))
    alone = [detector.detect(image) for image in images]
    together = detector.detect_batch(images)
    reversed_together = detector.detect_batch(images[::-1])[::-1]
    assert sum(map(len, alone)) >= len(images)
    for faces in (together, reversed_together):
        for expected, found in zip(alone, faces):
            assert [(f.box, f.landmarks.tolist(), f.score) for f in found] == \
                   [(f.box, f.landmarks.tolist(), f.score) for f in expected]


def _detect(photos: Path, out: Path, cache: Path, batch_size: int, workers: int):
    """Detect ``photos`` and write the manifest and rejects under ``out``."""
    result = detect_photos(photos, DetectParams(cache=cache, batch_size=batch_size), ComputeParams(workers=workers))
    write_table(out / "manifest.parquet", result.manifest)
    write_table(out / "rejects.parquet", result.rejects)
    return result


def test_manifest_and_rejects_are_the_same_bytes_for_any_batch_size_worker_count_and_cache_state(
        photos, tmp_path):
    files = sum(1 for path in photos.rglob("*") if path.is_file())
    runs = {"32x2_cold": _detect(photos, tmp_path / "32x2_cold", tmp_path / "cold1.sqlite", 32, 2),
            "8x1_cold": _detect(photos, tmp_path / "8x1_cold", tmp_path / "cold2.sqlite", 8, 1)}
    # Warm the third cache with half the photos, detected in batches of 5, from another folder.
    half = tmp_path / "half"
    for folder in sorted(photos.iterdir())[::2]:
        shutil.copytree(folder, half / folder.name)
    _detect(half, tmp_path / "5x1_half", tmp_path / "warm.sqlite", 5, 1)
    runs["3x2_warm"] = _detect(photos, tmp_path / "3x2_warm", tmp_path / "warm.sqlite", 3, 2)

    assert 0 < runs["3x2_warm"].cached < files - 2
    first = runs["32x2_cold"]
    assert first.manifest["subject"].sum() >= len(LFW_FOLDERS) + len(CELEBA_PHOTOS)
    assert sorted(first.rejects["path"]) == ["nobody/grey.jpg", "nobody/truncated.jpg"]
    for table in ("manifest.parquet", "rejects.parquet"):
        expected = (tmp_path / "32x2_cold" / table).read_bytes()
        for name in runs:
            assert (tmp_path / name / table).read_bytes() == expected, f"{name}/{table} differs from 32x2_cold"
