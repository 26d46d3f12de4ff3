"""Face detectors behind one protocol: an RGB photo in, faces with 5 landmarks out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    ``box`` is (x1, y1, x2, y2); ``landmarks`` is 5×2 (x, y) in ArcFace order: left eye,
    right eye, nose tip, left mouth corner, right mouth corner ("left" as seen in the image).
    ``score`` is the detector's face probability in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an H×W×3 RGB uint8 image, in no particular order."""
        ...


def build_detector(params) -> Detector:
    """The detector named by ``params.backend`` (a :class:`facerec.config.DetectParams`)."""
    if params.backend == "mtcnn":
        from facerec.detection.mtcnn import MtcnnDetector

        return MtcnnDetector(min_face_size=params.min_face_size, thresholds=params.thresholds)
    raise ValueError(f"detect.backend: unknown detector {params.backend!r}")
