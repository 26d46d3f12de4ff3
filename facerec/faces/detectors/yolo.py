"""YOLO face detection through ultralytics, from a local weights file the user names.

Two kinds of ultralytics models are accepted (``detect.weights`` in params.yaml):

- a box-only face detector (task ``detect``): the 5 landmarks come from the ``landmarker``
  (MTCNN's O-Net) run inside each box;
- a face pose model with 5 keypoints (task ``pose``, ``kpt_shape`` [5, 2] or [5, 3]): the
  keypoints are the landmarks, assumed in the yolov8-face order, which is ArcFace's: left eye,
  right eye, nose tip, left mouth corner, right mouth corner, "left" as seen in the image.
  They are used as predicted, with no half-pixel shift: face datasets annotate landmarks at
  pixel positions, which is the pixel-centre convention of :class:`facerec.faces.detectors.Face`.
  A keypoint's confidence (the third value of [5, 3]) is ignored.

A pose model with any other number of keypoints (a body-pose model) and segmentation,
classification or oriented-box models are rejected when loading. A model with one class is a
face detector whatever that class is called; in a model with several classes the faces are
the classes whose name contains "face", and a model with none (e.g. COCO's 80) is rejected.

ultralytics is kept off the network (see :func:`_offline_yolo`), and a weights file is
loaded only from an existing local path: ultralytics itself would try to download an unknown
or official name (``yolo11n.pt``) from GitHub. Loading a ``.pt`` file unpickles it, which can
run code: use weights from a source you trust.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np

from facerec.faces.detectors import Detector, Face
from facerec.runtime.offline import silence_network

# Boxes below this confidence are dropped inside YOLO; the caller's ``detect.min_score``
# decides which of the rest count, so a YOLO run reports every plausible face to it.
CONFIDENCE_FLOOR = 0.05
FACE_KEYPOINTS = 5


@functools.cache
def _offline_yolo():
    """ultralytics' ``YOLO`` class, imported so that nothing it does reaches the network.

    Besides the environment defaults of :mod:`facerec.runtime.offline` (YOLO_OFFLINE, no auto-install,
    quiet), ultralytics keeps its settings file and fonts in ``$YOLO_CONFIG_DIR/Ultralytics``;
    it defaults here to ``.ultralytics`` in the working directory, i.e. the project (DVC
    stages run at its root), beside ``.prefect`` and ``.cache``: ignored by git, never mixed
    with another project's ultralytics settings, and ``~/.config`` is left alone. The path is
    made absolute so that child processes started elsewhere use the same folder. A
    YOLO_CONFIG_DIR the user set wins; it must be set before ultralytics is first imported in
    the process, which is why ultralytics is imported here and nowhere at module level.
    """
    silence_network()
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(".ultralytics").resolve()))
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS, USER_CONFIG_DIR

    if SETTINGS["sync"]:  # usage events and crash reports to Ultralytics; write the file only to change it
        SETTINGS.update(sync=False)
    _place_fonts(USER_CONFIG_DIR)
    return YOLO


def _place_fonts(folder: Path) -> None:
    """Put matplotlib's DejaVuSans where ultralytics looks for Arial.ttf and Arial.Unicode.ttf:
    drawing labels or checking a dataset would otherwise download them from GitHub."""
    import matplotlib

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = folder / name
        if not target.exists():
            # Detector processes start together: copy under a private name, then rename.
            partial = folder / f".{name}.{os.getpid()}"
            shutil.copyfile(source, partial)
            os.replace(partial, target)


def _face_classes(names: dict[int, str], weights: Path) -> list[int] | None:
    """The class ids that are faces: None (all) for a one-class model."""
    if len(names) == 1:
        return None
    faces = [index for index, name in names.items() if "face" in str(name).lower()]
    if not faces:
        listed = ", ".join(str(name) for name in list(names.values())[:10])
        raise ValueError(f"{weights}: a YOLO model with {len(names)} classes ({listed}"
                         f"{', ...' if len(names) > 10 else ''}) and none named 'face'; "
                         "detect.weights must be a face detector")
    return faces


def _uses_keypoints(model, weights: Path) -> bool:
    """True for a 5-keypoint face pose model, False for a box-only detector; others are errors."""
    if model.task == "detect":
        return False
    if model.task != "pose":
        raise ValueError(f"{weights}: a YOLO {model.task} model; detect.weights must be a face "
                         "detector (task detect) or a 5-keypoint face pose model (task pose)")
    kpt_shape = list(model.model.model[-1].kpt_shape)
    if kpt_shape[0] != FACE_KEYPOINTS or kpt_shape[1] not in (2, 3):
        raise ValueError(f"{weights}: a YOLO pose model with kpt_shape {kpt_shape}; face landmarks "
                         "need [5, 2] or [5, 3] (eyes, nose, mouth corners), or use a box-only face model")
    return True


class YoloDetector:
    """An ultralytics YOLO face model on the CPU: RGB uint8 photos in, faces with 5 landmarks out.

    ``weights`` is a local ultralytics ``.pt`` checkpoint; ``image_size`` the inference size
    in pixels (the long side, letterboxed). ``landmarker`` (an MTCNN detector) gives the
    landmarks of box-only models and answers :meth:`landmarks_in_boxes`; a pose model finds
    its own landmarks. A face's score is YOLO's box confidence; boxes above
    :data:`CONFIDENCE_FLOOR` are returned, the caller filters by its own minimum.
    """

    def __init__(self, weights: str | Path, image_size: int, landmarker: Detector | None = None) -> None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"YOLO weights not found: {weights} (detect.weights); give the path of a "
                                    "local ultralytics .pt face model, nothing is downloaded")
        if weights.suffix != ".pt":
            raise ValueError(f"{weights}: YOLO weights must be an ultralytics PyTorch checkpoint (.pt)")
        yolo = _offline_yolo()
        try:
            # Only an existing file by absolute path: a bare name would be looked up on GitHub.
            self.model = yolo(str(weights.resolve()))
        except Exception as error:  # ultralytics/torch raise many types for a file that is not a model
            raise ValueError(f"{weights} is not an ultralytics YOLO model: {error}") from error
        from ultralytics.nn.tasks import BaseModel

        if not isinstance(self.model.model, BaseModel):  # e.g. a plain torch module saved as {"model": ...}
            raise ValueError(f"{weights} is not an ultralytics YOLO model: it holds a "
                             f"{type(self.model.model).__name__}")
        self.keypoints = _uses_keypoints(self.model, weights)
        self.classes = _face_classes(self.model.names, weights)
        if not self.keypoints and landmarker is None:
            raise ValueError(f"{weights} is a box-only YOLO model: it needs a landmarker for the 5 landmarks")
        self.weights = weights
        self.image_size = image_size
        self.landmarker = landmarker

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces of each H×W×3 RGB uint8 image, all images in one YOLO batch.

        Boxes are (x1, y1, x2, y2) pixel edges; landmarks 5×2 pixel-centre coordinates.
        """
        if not images:
            return []
        # ultralytics takes numpy images as OpenCV's BGR.
        bgr = [np.ascontiguousarray(image[..., ::-1]) for image in images]
        results = self.model.predict(bgr, imgsz=self.image_size, conf=CONFIDENCE_FLOOR, classes=self.classes,
                                     device="cpu", verbose=False)
        faces: list[list[Face]] = []
        for image, result in zip(images, results):
            boxes = result.boxes.xyxy.cpu().numpy().astype(np.float32)
            scores = result.boxes.conf.cpu().numpy()
            if len(boxes) == 0:
                faces.append([])
                continue
            if self.keypoints:
                landmarks = result.keypoints.xy.cpu().numpy()
            else:
                # O-Net's face probability is not used: the score stays YOLO's confidence.
                assert self.landmarker is not None  # __init__ refuses a box-only model without one
                landmarks, _ = self.landmarker.landmarks_in_boxes(image, boxes)
            faces.append([Face(box=(float(x1), float(y1), float(x2), float(y2)), landmarks=points.astype(np.float32),
                               score=float(score))
                          for (x1, y1, x2, y2), points, score in zip(boxes, landmarks, scores)])
        return faces

    def landmarks_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The landmarker's 5 landmarks (K×5×2) and face probability (K) in K x1,y1,x2,y2 boxes."""
        if self.landmarker is None:
            raise ValueError("YoloDetector.landmarks_in_boxes needs a landmarker (none was given)")
        return self.landmarker.landmarks_in_boxes(image, boxes)
