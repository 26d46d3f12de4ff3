"""5-point alignment puts the landmarks on the ArcFace template."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CELEBA
from facerec.data.images import load_rgb
from facerec.faces.alignment import ARCFACE_TEMPLATE, align_face, estimate_alignment, warp_landmarks
from facerec.faces.detectors.mtcnn import MtcnnDetector


def _similarity(scale: float, angle: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


@pytest.mark.parametrize("scale,angle,shift", [(2.5, 0.3, (40, 70)), (0.8, -0.6, (5, 9)), (1.0, 0.0, (0, 0))])
def test_landmarks_of_a_moved_template_land_exactly_on_the_template(scale, angle, shift):
    moved = warp_landmarks(ARCFACE_TEMPLATE, _similarity(scale, angle, shift))
    image = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    crop, error = align_face(image, moved)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert error < 1e-6
    np.testing.assert_allclose(warp_landmarks(moved, estimate_alignment(moved)), ARCFACE_TEMPLATE, atol=1e-6)


def test_a_real_face_aligned_is_found_again_at_the_template_points():
    detector = MtcnnDetector(20, (0.6, 0.7, 0.7))
    photo = load_rgb(sorted(CELEBA.glob("*/*.jpg"))[0], 40_000_000, 32)
    face = max(detector.detect(photo), key=lambda f: f.area)
    crop, error = align_face(photo, face.landmarks)
    assert error < 10
    # Detecting on the crop itself finds the landmarks within a few pixels of the template.
    padded = np.pad(crop, ((56, 56), (56, 56), (0, 0)))
    again = max(detector.detect(padded), key=lambda f: f.score)
    assert np.linalg.norm(again.landmarks - 56 - ARCFACE_TEMPLATE, axis=1).mean() < 6


def test_degenerate_landmarks_are_an_error():
    with pytest.raises(ValueError, match="degenerate"):
        estimate_alignment(np.zeros((5, 2)))
