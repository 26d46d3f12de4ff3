"""Decode one photo file safely into an upright RGB uint8 array.

Every file either decodes or raises :class:`ImageRejected`. Its message starts with a short,
stable category followed by a colon, so that rejects can be counted by
``reason.split(":")[0]``:

- ``file not found``: nothing at the path (or a broken symbolic link);
- ``not a file``: a directory, FIFO, socket or device;
- ``unreadable file``: the operating system refuses to read it (permissions, I/O error);
- ``not an image``: empty, text, or not one of :data:`PHOTO_FORMATS` (every still format
  Pillow decodes);
- ``image too large``: more pixels than allowed, refused from the header alone;
- ``image too small``: a side shorter than allowed;
- ``unreadable image``: a recognised format that fails to decode (truncated, corrupt), or
  any other error from PIL, with the exception type named.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.init()
# Pillow's readers that are not for photos: EPS starts Ghostscript, icons decode their pixels
# while opening (so the size guard would come too late) and report icon sizes, and the stubs
# and MPEG only identify files that Pillow cannot decode.
_NOT_PHOTOS = {"EPS", "ICO", "CUR", "ICNS", "BUFR", "GRIB", "HDF5", "WMF", "MPEG", "IPTC"}
# Every still format Pillow decodes (Netpbm's PGM/PPM/PBM, TGA, PCX, SGI, JPEG 2000, QOI, ...),
# the common ones first: Image.open tries them in this order.
PHOTO_FORMATS = tuple(dict.fromkeys(
    [name for name in ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF", "PPM") if name in Image.OPEN]
    + sorted(set(Image.OPEN) - _NOT_PHOTOS)))


class ImageRejected(Exception):
    """A file that cannot be used as a photo; ``str(error)`` is the reason recorded."""


def load_rgb(path: str | Path, max_pixels: int, min_side: int) -> np.ndarray:
    """Decode ``path`` into an upright H×W×3 RGB uint8 array (H×W after EXIF orientation).

    Conventions: EXIF orientation is applied; animated files (GIF, WebP, APNG) give their
    first frame; transparent areas become white, as a viewer shows them; grey, 1-bit,
    palette and CMYK become RGB; 16-bit grey is scaled from its full 0..65535 range; 32-bit
    int and float grey ('I', 'F'), which have no fixed white level, are stretched from
    their finite minimum..maximum to 0..255.

    The pixel count is checked from the header before any pixel is decoded, so memory stays
    proportional to ``max_pixels`` whatever the file claims. PIL's own ceiling
    (twice ``Image.MAX_IMAGE_PIXELS``) still applies when ``max_pixels`` is above it.
    Raises ImageRejected, with a categorised reason (see the module docstring), for
    anything that is not a usable photo.
    """
    _require_regular_file(path)
    try:
        # Opened apart from the `with file` below (which closes it) so that only open()'s
        # OSError reads as "unreadable file", not one from decoding.
        file = open(path, "rb")  # noqa: SIM115
    except OSError as error:
        raise ImageRejected(f"unreadable file: {error.strerror}") from None
    try:
        with file, warnings.catch_warnings():
            # Our limit replaces PIL's warning threshold: a photo under max_pixels is fine.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file, formats=PHOTO_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejected(f"image too large: {width}x{height} is {width * height} pixels, "
                                        f"over the limit of {max_pixels} (max_image_pixels)")
                if min(width, height) < min_side:
                    raise ImageRejected(f"image too small: {width}x{height}, under {min_side} px "
                                        f"a side (min_image_side)")
                return _to_rgb_array(ImageOps.exif_transpose(image))
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image: no still image format that Pillow reads") from None
    except Image.DecompressionBombError as error:
        raise ImageRejected(f"image too large: {error}") from None
    except Exception as error:  # noqa: BLE001  (any decoder failure is this file's fault)
        raise ImageRejected(f"unreadable image: {type(error).__name__}: {error}") from None


def _require_regular_file(path: str | Path) -> None:
    """Reject what must not be opened: opening a FIFO for reading would block forever."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise ImageRejected("file not found: nothing at this path (or a broken link)") from None
    except OSError as error:
        raise ImageRejected(f"unreadable file: {error.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise ImageRejected("not a file: a directory")
    if not stat.S_ISREG(status.st_mode):
        raise ImageRejected("not a file: a FIFO, socket or device")
    if status.st_size == 0:
        raise ImageRejected("not an image: the file is empty")


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    if image.mode.startswith("I;16"):
        grey = np.asarray(image).astype(np.float32) / 257.0  # 65535 / 257 = 255
    elif image.mode in ("I", "F"):
        values = np.asarray(image).astype(np.float64)
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 0.0)
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = np.nan_to_num((values - low) * scale, nan=0.0, posinf=255.0, neginf=0.0)
    else:
        if image.has_transparency_data:
            white = Image.new("RGBA", image.size, "white")
            image = Image.alpha_composite(white, image.convert("RGBA"))
        return np.array(image.convert("RGB"), dtype=np.uint8)
    grey = np.rint(grey).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)
