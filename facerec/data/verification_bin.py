"""insightface's verification sets (``lfw.bin``, ``cfp_fp.bin``, ``agedb_30.bin``, …).

Each is a pickle of ``(images, issame)``: a list of 2N encoded aligned 112×112 faces (JPEG
or PNG bytes) and N booleans, faces 2i and 2i+1 forming pair i. A pickle can run any code
when loaded, so these are read with an unpickler that builds plain data only (bytes,
strings, lists, tuples, bools, numbers) and refuses every class or function a file asks for.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import torch

CROP_SIDE = 112


class VerificationBinError(ValueError):
    """A .bin file that is not a readable, plain verification set."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Builds only what pickle's own opcodes make (no class, no function, no reducer)."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"it asks for {module}.{name}; only bytes, lists and bools are allowed")


def read_verification_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """(the 2N encoded faces, the N issame flags) of an insightface ``.bin``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            # Python 2 wrote insightface's files: its str is bytes here.
            data = _PlainDataUnpickler(handle, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
        raise VerificationBinError(f"{path}: not loaded: {error}") from None
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise VerificationBinError(f"{path}: expected a pair (images, issame), got {type(data).__name__}")
    images, issame = data
    if not isinstance(images, list) or not all(isinstance(image, (bytes, bytearray)) for image in images):
        raise VerificationBinError(f"{path}: the images must be a list of encoded images (bytes)")
    if not isinstance(issame, list) or not all(isinstance(flag, bool) for flag in issame):
        raise VerificationBinError(f"{path}: issame must be a list of bools")
    if len(images) != 2 * len(issame) or not issame:
        raise VerificationBinError(f"{path}: {len(images)} images for {len(issame)} pairs (need two per pair)")
    return [bytes(image) for image in images], np.array(issame, dtype=bool)


def write_verification_bin(path: str | Path, images: list[bytes], issame: list[bool]) -> None:
    """Write a set in insightface's layout (used to build test sets from aligned faces)."""
    with Path(path).open("wb") as handle:
        pickle.dump((list(images), [bool(flag) for flag in issame]), handle, protocol=pickle.HIGHEST_PROTOCOL)


def decode_faces(path: str | Path, images: list[bytes]) -> torch.Tensor:
    """The encoded faces as uint8 RGB N×3×112×112; an undecodable or mis-sized face is an
    error naming its index."""
    crops = np.empty((len(images), CROP_SIDE, CROP_SIDE, 3), dtype=np.uint8)
    for index, encoded in enumerate(images):
        image = cv2.imdecode(np.frombuffer(encoded, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise VerificationBinError(f"{path}: image {index} cannot be decoded")
        if image.shape[:2] != (CROP_SIDE, CROP_SIDE):
            raise VerificationBinError(f"{path}: image {index} is {image.shape[1]}×{image.shape[0]}, not an aligned "
                                       f"{CROP_SIDE}×{CROP_SIDE} face")
        crops[index] = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()
