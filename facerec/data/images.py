"""Find photos in identity folders and decode them safely into upright RGB uint8 arrays.

Every file under a folder is either decodable into an image or answers with a
:class:`ImageRejected` reason; nothing raises past this module for a bad file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageRejected(Exception):
    """A file that cannot be used as a photo; ``str(error)`` is the reason recorded."""


@dataclass(frozen=True)
class PhotoFile:
    """A file found under a photo folder. ``path`` is relative to that folder (POSIX style)."""

    path: str
    identity: str | None


def iter_photo_files(root: str | Path) -> Iterator[PhotoFile]:
    """Every regular file under ``root`` in sorted order; identity = first-level folder name.

    Files directly in ``root`` have no identity (``None``) and are reported so that the
    caller can reject them instead of silently dropping them.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: photo folder not found")
    for folder, subdirs, files in os.walk(root, followlinks=True):
        subdirs.sort()
        relative_folder = Path(folder).relative_to(root)
        for name in sorted(files):
            relative = (relative_folder / name).as_posix()
            identity = relative_folder.parts[0] if relative_folder.parts else None
            yield PhotoFile(path=relative, identity=identity)


def load_rgb(path: str | Path, max_pixels: int, min_side: int) -> np.ndarray:
    """Decode ``path`` into an upright H×W×3 RGB uint8 array.

    EXIF orientation is applied, grey/CMYK/palette/alpha/16-bit images are converted to
    8-bit RGB, and for animated files the first frame is used. The pixel count is checked
    from the header before decoding so that a decompression bomb never reaches memory.
    Raises ImageRejected with the reason for anything that is not a usable photo.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejected(
                    f"image too large: {width}x{height} pixels exceeds the limit of {max_pixels}"
                )
            if min(width, height) < min_side:
                raise ImageRejected(f"image too small: {width}x{height}, need at least {min_side} px a side")
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.seek(0)
                upright = ImageOps.exif_transpose(image)
                return _to_rgb_array(upright)
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image: the file format is not recognised") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"unreadable image: {type(error).__name__}: {error}") from None


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL's convert("RGB") clips 16-bit values instead of rescaling them.
        values = np.asarray(image, dtype=np.float64)
        peak = max(values.max(), 1.0)
        grey = (values * (255.0 / (65535.0 if peak > 255 else 255.0))).clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas become white, as a viewer shows them, not black.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
