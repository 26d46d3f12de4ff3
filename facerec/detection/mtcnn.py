"""MTCNN (Zhang et al. 2016) with the P/R/O-Net weights shipped inside facenet-pytorch.

facenet-pytorch's metadata pins torch<2.3 and numpy<2, yet its MTCNN runs on current
versions, so it is installed with ``--no-deps`` (see README). Its weights are package
data: nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import torch

from facerec.detection import Face


class MtcnnDetector:
    def __init__(self, min_face_size: int = 20, thresholds=(0.6, 0.7, 0.7)) -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as error:
            raise ImportError(
                "the MTCNN detector needs facenet-pytorch: "
                "pip install --no-deps -r requirements-nodeps.txt"
            ) from error
        self._mtcnn = MTCNN(
            min_face_size=min_face_size, thresholds=list(thresholds), keep_all=True, device="cpu"
        )

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[Face]:
        boxes, scores, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        return [
            Face(box=tuple(float(v) for v in box), landmarks=np.asarray(lm, dtype=np.float32),
                 score=float(score))
            for box, score, lm in zip(boxes, scores, points)
        ]
