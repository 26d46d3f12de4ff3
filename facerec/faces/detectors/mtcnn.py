"""MTCNN (Zhang et al. 2016): a CPU cascade over the P/R/O-Net weights of facenet-pytorch.

facenet-pytorch ships the three networks' weights as package data (nothing is downloaded);
its metadata pins torch<2.3 and numpy<2, yet the networks run on current versions, so it is
installed with ``--no-deps`` (see README). Its own ``MTCNN.detect`` cuts every candidate
box out with one ``interpolate`` call per box and runs R/O-Net channels-first; this cascade
area-resamples the crops with OpenCV, as MTCNN was trained, and runs the networks
channels-last, with the same thresholds. Candidate boxes that cross the image border are
zero-padded as in the original MTCNN (facenet-pytorch clips and stretches them instead).

Each photo runs through the whole cascade on its own: no network call mixes the tensors of
two photos, and no call's shape depends on the other photos of a batch. The convolution
kernels (oneDNN) pick their algorithm by tensor shape, so batching photos together changed
results in the last float bits, enough to flip a candidate near a threshold: a photo's faces
depended on which photos shared its batch, and the content cache then kept whichever
answer came first. Per photo, the faces are a function of the photo and the settings alone.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from facerec.faces.detectors import Face

PYRAMID_FACTOR = 0.709  # scale step between pyramid levels, as in the paper
PNET_CELL, PNET_STRIDE = 12, 2  # P-Net sees a 12 px window every 2 px


def _networks() -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    try:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    except ImportError as error:
        raise ImportError(
            "the MTCNN detector needs facenet-pytorch: pip install --no-deps -r requirements-nodeps.txt"
        ) from error
    return tuple(net().eval().to(memory_format=torch.channels_last) for net in (PNet, RNet, ONet))


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8-range RGB → the networks' input range, (x − 127.5) / 128."""
    return (pixels - 127.5) * 0.0078125


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each x1,y1,x2,y2 box to a square around its centre (the next net's input is
    square), on whole pixels so that the crop a net sees is exactly the box."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True).clamp(min=1) / 2
    return torch.cat([centre - half, centre + half], dim=1).round()


def _refine(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Apply a net's box regression: offsets are fractions of the box's width and height."""
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    return boxes + offsets * size


def _min_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Greedy NMS where overlap = intersection / smaller area (MTCNN's final "Min" mode), so a
    box nested inside a more confident one is dropped. Few boxes reach this step: a plain loop."""
    order = torch.argsort(scores, descending=True)
    boxes = boxes[order]
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    overlap = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1e-6)
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlap[i] > threshold
    return order[torch.tensor(keep, dtype=torch.long)]


class MtcnnDetector:
    """MTCNN face detector: RGB uint8 photos in, faces with 5 landmarks in ArcFace order out.

    ``thresholds`` are the P-, R- and O-Net acceptance probabilities; faces smaller than
    ``min_face_size`` pixels are not searched for (a larger value is faster).
    """

    def __init__(self, min_face_size: int, thresholds: tuple[float, float, float]) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.pnet, self.rnet, self.onet = _networks()

    @torch.inference_mode()
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces of one H×W×3 RGB uint8 image.

        Boxes are (x1, y1, x2, y2) pixel edges; landmarks are pixel-centre coordinates (the
        centre of pixel (i, j) is (i, j)), the convention cv2.warpAffine works in.
        """
        boxes = self._propose(image)
        boxes, _ = self._stage(self.rnet, 24, image, boxes, self.thresholds[1])
        boxes, out = self._stage(self.onet, 48, image, boxes, self.thresholds[2])
        if len(boxes) == 0:
            return []
        offsets, points, scores = out
        landmarks = _landmarks(boxes, points)
        boxes = _refine(boxes, offsets)
        return [Face(box=tuple(boxes[i].tolist()), landmarks=landmarks[i].numpy(), score=float(scores[i]))
                for i in _min_nms(boxes, scores, 0.7).tolist()]

    def detect_batch(self, images: list[np.ndarray]) -> list[list[Face]]:
        """Faces of each image, detected one image at a time (see the module docstring): the
        same faces whatever other images share the batch."""
        return [self.detect(image) for image in images]

    def landmarks_in_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """O-Net's 5 landmarks (K×5×2, pixel-centre coordinates) and face probability (K) for
        K given (x1, y1, x2, y2) boxes: the landmarker for detectors that only find boxes, and
        for photos that are already tight face crops."""
        with torch.inference_mode():
            squares = _square(torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)))
            _, points, scores = self._run(self.onet, 48, image, squares)
            return _landmarks(squares, points).numpy(), scores.numpy()

    def _propose(self, image: np.ndarray) -> torch.Tensor:
        """P-Net over the image pyramid: square candidate boxes."""
        height, width = image.shape[:2]
        scale = PNET_CELL / self.min_face_size
        candidates = []
        resized = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1)[None]
        while min(height, width) * scale >= PNET_CELL:
            # Each level is area-resampled from the previous, smaller one rather than from
            # the full photo: the same pyramid for a fraction of the memory traffic.
            resized = F.interpolate(resized, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            offsets, probabilities = self.pnet(_normalise(resized).contiguous(memory_format=torch.channels_last))
            face = probabilities[0, 1]
            row, col = torch.nonzero(face >= self.thresholds[0], as_tuple=True)
            if len(row):
                corner = torch.stack([col, row], dim=1).float() * PNET_STRIDE
                # Each P-Net output cell looks at a 12 px window of the resized image.
                level = torch.cat([corner / scale, (corner + PNET_CELL) / scale], dim=1)
                level_scores = face[row, col]
                keep = nms(level, level_scores, 0.5)
                level = _refine(level[keep], offsets[0].permute(1, 2, 0)[row[keep], col[keep]])
                candidates.append(torch.cat([level, level_scores[keep, None]], dim=1))
            scale *= PYRAMID_FACTOR
        if not candidates:
            return torch.zeros(0, 4)
        boxes = torch.cat(candidates)
        return _square(boxes[nms(boxes[:, :4], boxes[:, 4], 0.7), :4])

    def _stage(self, net: torch.nn.Module, size: int, image: np.ndarray, boxes: torch.Tensor, threshold: float):
        """Score candidate boxes with R-Net or O-Net and drop the rejected ones; R-Net's
        survivors are refined, merged by NMS and squared for O-Net."""
        if len(boxes) == 0:
            return boxes, None
        out = self._run(net, size, image, boxes)
        passed = out[-1] > threshold
        boxes, out = boxes[passed], tuple(o[passed] for o in out)
        if net is self.onet:
            return boxes, out
        keep = nms(boxes, out[-1], 0.7)
        return _square(_refine(boxes[keep], out[0][keep])), None

    def _run(self, net: torch.nn.Module, size: int, image: np.ndarray, boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Cut size×size crops of ``boxes`` (whole-pixel edges) out of ``image`` and run
        ``net`` on them; the outputs are in the order of ``boxes``, the last being the face
        probability.

        Crops are area-resampled with OpenCV, as MTCNN was trained, and the image is
        zero-padded where a box crosses its border. One cv2.resize per box measured 4x faster
        here than torchvision's roi_align over all the boxes.
        """
        crops = np.empty((len(boxes), size, size, 3), np.uint8)
        for index, (x1, y1, x2, y2) in enumerate(boxes.to(torch.int64).tolist()):
            crops[index] = cv2.resize(_padded_crop(image, x1, y1, x2, y2), (size, size), interpolation=cv2.INTER_AREA)
        inputs = _normalise(torch.from_numpy(crops).permute(0, 3, 1, 2).float())
        # Chunks bound the memory a photo with thousands of candidates takes.
        results = [net(inputs[i:i + 512]) for i in range(0, len(inputs), 512)]
        merged = [torch.cat(parts) for parts in zip(*results)]
        # Both nets end in a 2-way softmax: column 1 is the face probability.
        return (*merged[:-1], merged[-1][:, 1])


def _padded_crop(image: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Pixels [y1, y2) × [x1, x2) of ``image``, zeros where that lies outside it."""
    height, width = image.shape[:2]
    if x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height:
        return image[y1:y2, x1:x2]
    crop = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    inside_x1, inside_y1 = max(x1, 0), max(y1, 0)
    inside_x2, inside_y2 = min(x2, width), min(y2, height)
    if inside_x2 > inside_x1 and inside_y2 > inside_y1:
        crop[inside_y1 - y1:inside_y2 - y1, inside_x1 - x1:inside_x2 - x1] = \
            image[inside_y1:inside_y2, inside_x1:inside_x2]
    return crop


def _landmarks(boxes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """O-Net's landmark outputs (K×10: five x then five y, as fractions of its square input
    box) → K×5×2 pixel-centre coordinates (half a pixel left/up of the box-edge frame)."""
    size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    return boxes[:, None, :2] + points.view(-1, 2, 5).transpose(1, 2) * size - 0.5
