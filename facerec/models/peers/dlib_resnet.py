"""dlib's face recognition ResNet v1 (Davis King; 29 convolutions, 128-d, CC0 weights from
PyPI ``face_recognition_models``), run by ``dlib-bin``.

Crop as dlib does: its 5-point shape predictor (eye corners, nose base) placed inside our
detector's box, then ``get_face_chip`` at 150×150 with 25 % padding; the network
normalises the chip itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facerec.models.peers import INSTALL_HINT, PeerUnavailable, PhotoFace, normalised, package_file

MODELS = "models"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


class DlibResNet:
    name = "dlib_resnet_v1"
    input_size = CHIP_SIZE

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise PeerUnavailable(f"package dlib-bin is not installed ({INSTALL_HINT})") from None
        self._dlib = dlib
        self._files = [package_file("face_recognition_models", f"{MODELS}/shape_predictor_5_face_landmarks.dat"),
                       package_file("face_recognition_models", f"{MODELS}/dlib_face_recognition_resnet_model_v1.dat")]
        self._landmarker = dlib.shape_predictor(str(self._files[0]))
        self._network = dlib.face_recognition_model_v1(str(self._files[1]))

    def chip(self, face: PhotoFace) -> np.ndarray:
        """The 150×150 uint8 RGB chip dlib aligns ``face`` to."""
        x1, y1, x2, y2 = (int(round(value)) for value in face.box)
        photo = np.ascontiguousarray(face.photo)
        shape = self._landmarker(photo, self._dlib.rectangle(x1, y1, x2, y2))
        return self._dlib.get_face_chip(photo, shape, size=CHIP_SIZE, padding=CHIP_PADDING)

    def embed(self, faces: Sequence[PhotoFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, 128), np.float32)
        return normalised(self._network.compute_face_descriptor([self.chip(face) for face in faces]))

    def weight_files(self) -> list[Path]:
        return list(self._files)

    def parameter_count(self) -> None:
        return None  # dlib's Python API exposes no layers to count
