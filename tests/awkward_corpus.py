"""A photo set of awkward files built from one real face photo, with each file's expected fate.

Outcomes are ``"accepted"`` or the expected reject category, the text of the reason before
its first colon: ``no face found`` (decodes, but holds no face), ``no identity``,
``duplicate``, ``file not found``, ``not an image``, ``unreadable image``,
``image too small``, ``image too large``. They assume the default detect limits (at most
40 000 000 pixels, at least 32 px a side). Every accepted file shows the source face large,
upright and unoccluded once decoded, so a real detector finds it.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from conftest import LFW
from facerec.data.images import ImageRejected, load_rgb
from facerec.data.sources import PhotoFile

# A 250×250 LFW photo with one large, frontal, centred face.
FACE_PHOTO = LFW / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
ACCEPTED = "accepted"
DECODES = "decodes"
LIMITS = {"max_pixels": 40_000_000, "min_side": 32}  # the detect defaults the outcomes assume
BOMB_SIDE = 20_000


def make_awkward_corpus(root: Path, face_source: Path = FACE_PHOTO) -> dict[str, str]:
    """Write an ImageFolder tree of awkward files under ``root`` from the photo ``face_source``.

    Returns the expected outcome of every file, keyed by its POSIX path relative to ``root``.
    The tree holds symbolic links, one of them a cycle (``Ada/back`` -> ``..``): build it
    where it is used rather than copying it.
    """
    face = Image.open(face_source).convert("RGB")
    upside_down = face.transpose(Image.Transpose.ROTATE_180)
    outcomes: dict[str, str] = {}

    def write(relative: str, outcome: str, content: bytes | Image.Image, **save) -> None:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Image.Image):
            content.save(path, **save)
        else:
            path.write_bytes(content)
        outcomes[relative] = outcome

    # Ada: one face in every format and pixel layout a photo set may hold.
    write("Ada/grey.jpg", ACCEPTED, face.convert("L"), quality=95)
    write("Ada/cmyk.jpg", ACCEPTED, face.convert("CMYK"), quality=95)
    write("Ada/rgba.png", ACCEPTED, _with_transparent_border(face))
    write("Ada/palette.png", ACCEPTED, _palette_with_transparent_border(face), transparency=255)
    grey16 = (np.asarray(face.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    write("Ada/grey16.png", ACCEPTED, Image.fromarray(grey16))
    grey = np.asarray(face.convert("L")).astype(np.float64)
    write("Ada/grey32.tif", ACCEPTED, Image.fromarray((grey * 1000 - 50_000).astype(np.int32)))
    write("Ada/float.tif", ACCEPTED, Image.fromarray((grey / 255).astype(np.float32)))
    write("Ada/rotated.jpg", ACCEPTED, _stored_rotated(face), exif=_orientation(6), quality=95)
    for name, frames in [("animated.gif", [_palette(face), _palette(upside_down)]),
                         ("animated.webp", [face, upside_down]), ("animated.png", [face, upside_down])]:
        write(f"Ada/{name}", ACCEPTED, frames[0], save_all=True, append_images=frames[1:],
              duration=100, loop=0)
    write("Ada/bitmap.bmp", ACCEPTED, face)
    # Netpbm, the format of several classic face databases, and the other still formats.
    write("Ada/grey.pgm", ACCEPTED, face.convert("L"))
    write("Ada/colour.ppm", ACCEPTED, face)
    write("Ada/grey16.pgm", ACCEPTED, Image.fromarray(grey16))
    write("Ada/ascii.pgm", ACCEPTED, _ascii_pgm(face))
    for name in ("targa.tga", "paintbrush.pcx", "silicon.sgi", "jpeg2000.jp2", "quite.qoi"):
        write(f"Ada/{name}", ACCEPTED, face)
    write("Ada/UPPER CASE.JPG", ACCEPTED, face_source.read_bytes())
    write("Ada/folder.jpg/photo.jpg", ACCEPTED, face_source.read_bytes())
    os.symlink("UPPER CASE.JPG", root / "Ada" / "link.jpg")
    outcomes["Ada/link.jpg"] = ACCEPTED
    os.symlink("..", root / "Ada" / "back")  # a cycle: lists nothing new
    os.symlink("missing.jpg", root / "Ada" / "gone.jpg")
    outcomes["Ada/gone.jpg"] = "file not found"
    write("Zoë Ångström/photo 1.jpg", ACCEPTED, face_source.read_bytes())

    # Bob: files that must be rejected, each for its own reason.
    jpeg = _encoded(face, "JPEG", quality=95)
    write("Bob/empty.jpg", "not an image", b"")
    write("Bob/truncated.jpg", "unreadable image", jpeg[: len(jpeg) // 3])
    write("Bob/text.jpg", "not an image", b"<html><body>404 Not Found</body></html>\n")
    write("Bob/notes.txt", "not an image", "photographed by Zoë, 2019\n".encode())
    write("Bob/.DS_Store", "not an image", b"\x00\x00\x00\x01Bud1" + bytes(64))
    write("Bob/tiny.png", "image too small", face.resize((16, 16)))
    write("Bob/bomb.png", "image too large", png_bomb(BOMB_SIDE))
    write("Bob/blank.png", "no face found", Image.new("RGB", face.size, (128, 128, 128)))
    write("Bob/tiny.pgm", "image too small", face.convert("L").resize((16, 16)))
    write("Bob/bomb.ppm", "image too large", b"P6\n30000 30000\n255\n" + bytes(64))
    write("Bob/truncated.ppm", "unreadable image", _encoded(face, "PPM")[:20_000])
    write("Bob/icon.ico", "not an image", face.resize((64, 64)))

    write("stray.jpg", "no identity", face_source.read_bytes())
    return outcomes


def make_photo_list(list_path: Path, corpus_root: Path, outcomes: dict[str, str],
                    absolute: bool = False) -> dict[str, str]:
    """Write a ``.csv`` or ``.parquet`` (by suffix) photo list of a corpus made by
    :func:`make_awkward_corpus`, with paths relative to the list's folder or absolute.

    Rows are written in reverse order (a reader must sort them), the root-level file with an
    empty identity, plus a row for a file that does not exist and a last row naming an
    earlier file again under another spelling. Returns the expected outcome of every row,
    keyed by its path as written.
    """
    def written(relative: str) -> str:
        target = corpus_root / relative
        return str(target) if absolute else Path(os.path.relpath(target, list_path.parent)).as_posix()

    rows, expected = [], {}
    for relative in sorted(outcomes, reverse=True):
        identity = relative.split("/")[0] if "/" in relative else ""
        rows.append((written(relative), identity))
        expected[written(relative)] = outcomes[relative]
    rows.append((written("Ada/missing.jpg"), "Ada"))
    expected[written("Ada/missing.jpg")] = "file not found"
    again = written("Ada/grey.jpg").replace("Ada/", "Ada/./")
    rows.append((again, "Ada"))
    expected[again] = "duplicate"
    table = pd.DataFrame(rows, columns=["path", "identity"])
    if list_path.suffix == ".parquet":
        table.to_parquet(list_path, index=False)
    else:
        table.to_csv(list_path, index=False)
    return expected


def outcome_before_detection(photo: PhotoFile) -> str:
    """The category of ``photo``'s listing or decoding reject, or ``"decodes"``."""
    if photo.reject_reason:
        return photo.reject_reason.split(":")[0]
    try:
        load_rgb(photo.location, **LIMITS)
    except ImageRejected as reason:
        return str(reason).split(":")[0]
    return DECODES


def expected_before_detection(outcomes: dict[str, str]) -> dict[str, str]:
    """``outcomes`` as :func:`outcome_before_detection` sees them: what the detector decides
    (a face or none) is ``"decodes"`` to it."""
    return {path: DECODES if outcome in (ACCEPTED, "no face found") else outcome
            for path, outcome in outcomes.items()}


def _ascii_pgm(face: Image.Image) -> bytes:
    """The face as a plain (P2, ASCII) PGM, the variant Pillow does not write."""
    pixels = np.asarray(face.convert("L"))
    rows = "\n".join(" ".join(map(str, row)) for row in pixels)
    return f"P2\n# written by hand\n{face.width} {face.height}\n255\n{rows}\n".encode()


def _encoded(image: Image.Image, format: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **save)
    return buffer.getvalue()


def _with_transparent_border(face: Image.Image, border: int = 12) -> Image.Image:
    alpha = Image.new("L", face.size, 0)
    alpha.paste(255, (border, border, face.width - border, face.height - border))
    rgba = face.convert("RGBA")
    rgba.putalpha(alpha)
    return rgba


def _palette_with_transparent_border(face: Image.Image, border: int = 12) -> Image.Image:
    """A 255-colour palette image whose border uses the extra index 255, to save as transparent."""
    palette = _palette(face, colors=255)
    indices = np.asarray(palette).copy()
    indices[:border], indices[-border:], indices[:, :border], indices[:, -border:] = 255, 255, 255, 255
    image = Image.fromarray(indices, "P")
    image.putpalette(palette.getpalette())
    return image


def _palette(image: Image.Image, colors: int = 256) -> Image.Image:
    # The fast octree method: the default median cut takes a third of a second a frame.
    return image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)


def _stored_rotated(face: Image.Image) -> Image.Image:
    """The face turned a quarter to the left: EXIF orientation 6 ("turn right to view") undoes it."""
    return face.transpose(Image.Transpose.ROTATE_90)


def _orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@functools.cache  # deflating the rows takes most of the corpus's build time
def png_bomb(side: int) -> bytes:
    """A 1-bit side×side black PNG, compressed row by row: kilobytes on disk, side² bytes
    once PIL decodes it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the row's bits, all zero
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
