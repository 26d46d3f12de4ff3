"""Face detectors behind one protocol: an RGB photo in, faces with 5 landmarks out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


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


def build_detector(params) -> Detector:
    """The detector named by ``params.backend`` (a :class:`facerec.config.DetectParams`)."""
    from facerec.detection.mtcnn import MtcnnDetector

    mtcnn = MtcnnDetector(min_face_size=params.min_face_size, thresholds=params.thresholds)
    if params.backend == "mtcnn":
        return mtcnn
    if params.backend == "yolo":
        from facerec.detection.yolo import YoloDetector

        # Box-only YOLO models get their landmarks from MTCNN's O-Net inside each box.
        return YoloDetector(params.weights, image_size=params.yolo_image_size, landmarker=mtcnn)
    raise ValueError(f"detect.backend: unknown detector {params.backend!r}")
