"""Face detectors behind one protocol: an RGB photo in, faces with 5 landmarks out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from facerec.config import DetectParams
from facerec.registry import DETECTORS


@dataclass(frozen=True)
class Face:
    """One detected face in image pixel coordinates.

    ``box`` is (x1, y1, x2, y2) pixel edges; ``landmarks`` is 5×2 (x, y) pixel-centre
    coordinates (pixel (i, j) is centred on (i, j), as OpenCV warps) in ArcFace order: left
    eye, right eye, nose tip, left mouth corner, right mouth corner ("left" as seen).
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
    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces of each H×W×3 RGB uint8 image, in no particular order."""
        ...

    def landmarks_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """5 landmarks (K×5×2) and a face probability (K) inside K given x1,y1,x2,y2 boxes."""
        ...


def _mtcnn(params: DetectParams) -> Detector:
    from facerec.faces.detectors.mtcnn import MtcnnDetector

    return MtcnnDetector(min_face_size=params.min_face_size, thresholds=params.thresholds)


@DETECTORS.register("yolo")
def _yolo(params: DetectParams) -> Detector:
    from facerec.faces.detectors.yolo import YoloDetector

    assert params.weights is not None  # DetectParams requires weights for backend yolo
    # Box-only YOLO models get their landmarks from MTCNN's O-Net inside each box.
    return YoloDetector(params.weights, image_size=params.yolo_image_size, landmarker=_mtcnn(params))


DETECTORS.register("mtcnn")(_mtcnn)


def build_detector(params: DetectParams) -> Detector:
    """The detector named by ``params.backend`` (``facerec.registry.DETECTORS``)."""
    detector: Detector = DETECTORS.get(params.backend)(params)
    return detector
