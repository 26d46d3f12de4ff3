"""Photos in every format decode to upright RGB uint8; anything else is rejected with a reason
whose category (the text before the first colon) can be counted."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from awkward_corpus import (
    FACE_PHOTO,
    LIMITS,
    expected_before_detection,
    make_awkward_corpus,
    outcome_before_detection,
    png_bomb,
)
from PIL import Image, ImageFile, ImageOps

from facerec.data.images import PHOTO_FORMATS, ImageRejected, load_rgb
from facerec.data.sources import iter_photos


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("awkward") / "photos"
    return root, make_awkward_corpus(root)


def test_every_awkward_file_decodes_or_is_rejected_with_its_expected_category(corpus):
    root, expected = corpus
    found = {photo.path: outcome_before_detection(photo) for photo in iter_photos(root)}
    assert found == expected_before_detection(expected)


@pytest.mark.parametrize("name", ["grey.jpg", "cmyk.jpg", "rgba.png", "palette.png", "grey16.png",
                                  "grey32.tif", "float.tif", "rotated.jpg", "animated.gif",
                                  "animated.webp", "animated.png", "bitmap.bmp", "grey.pgm", "colour.ppm",
                                  "grey16.pgm", "ascii.pgm", "targa.tga", "paintbrush.pcx", "silicon.sgi",
                                  "jpeg2000.jp2", "quite.qoi"])
def test_each_format_decodes_to_the_upright_first_frame_of_the_face(corpus, name):
    root, _ = corpus
    decoded = load_rgb(root / "Ada" / name, **LIMITS).astype(np.float32)
    if name.startswith(("grey", "float", "ascii")):
        face = np.asarray(Image.open(FACE_PHOTO).convert("L"), dtype=np.float32)[..., None]
    else:
        face = load_rgb(FACE_PHOTO, **LIMITS).astype(np.float32)
    assert decoded.shape == (250, 250, 3)
    centre = (slice(20, -20), slice(20, -20))  # inside the transparent borders, which turn white
    difference = np.abs(decoded[centre] - face[centre]).mean()
    # Turned (EXIF ignored) or upside down (the second frame), the face is far from itself.
    turned = [np.abs(decoded[centre] - np.rot90(face, k)[centre]).mean() for k in (1, 2, 3)]
    assert difference < 8 and min(turned) > 40


@pytest.mark.parametrize("orientation,stored", [
    (1, []), (2, [Image.Transpose.FLIP_LEFT_RIGHT]), (3, [Image.Transpose.ROTATE_180]),
    (4, [Image.Transpose.FLIP_TOP_BOTTOM]), (5, [Image.Transpose.TRANSPOSE]),
    (6, [Image.Transpose.ROTATE_90]), (7, [Image.Transpose.TRANSVERSE]),
    (8, [Image.Transpose.ROTATE_270]),
])
def test_all_eight_exif_orientations_come_out_upright(tmp_path, orientation, stored):
    upright = Image.fromarray(np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3))
    pixels = upright
    for transpose in stored:
        pixels = pixels.transpose(transpose)
    exif = Image.Exif()
    exif[0x0112] = orientation
    pixels.save(tmp_path / "photo.png", exif=exif)  # PNG: lossless, so the check is exact
    np.testing.assert_array_equal(load_rgb(tmp_path / "photo.png", **LIMITS), np.asarray(upright))


def test_sixteen_bit_grey_is_scaled_from_its_full_range(tmp_path):
    values = np.array([[0, 257 * 128, 65535] * 16] * 40, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "little.png")  # I;16
    Image.frombytes("I;16B", (48, 40), values.astype(">u2").tobytes()).save(tmp_path / "big.tif")
    for name in ("little.png", "big.tif"):
        assert Image.open(tmp_path / name).mode in ("I;16", "I;16B")
        decoded = load_rgb(tmp_path / name, **LIMITS)
        np.testing.assert_array_equal(decoded[0, :3], [[0, 0, 0], [128, 128, 128], [255, 255, 255]])


@pytest.mark.parametrize("values", [
    np.array([[-1000, 500, 2000] * 16] * 40, dtype=np.int32),
    np.array([[0.25, np.nan, 0.5, 1.0] * 12] * 40, dtype=np.float32),
], ids=["I", "F"])
def test_32_bit_int_and_float_grey_are_stretched_from_their_minimum_to_maximum(tmp_path, values):
    Image.fromarray(values).save(tmp_path / "grey.tif")
    decoded = load_rgb(tmp_path / "grey.tif", **LIMITS)
    finite = values[np.isfinite(values)]
    expected = np.where(np.isfinite(values), (values - finite.min()) * 255 / np.ptp(finite), 0)
    np.testing.assert_array_equal(decoded[..., 0], np.rint(expected).astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_areas_become_white_and_opaque_ones_keep_their_colour(tmp_path, mode):
    rgba = Image.new("RGBA", (48, 40), (200, 30, 30, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 48, 20))  # top half: transparent black
    if mode == "P":
        image = rgba.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        save = {"transparency": image.getpixel((0, 0))}
    else:
        image, save = rgba.convert(mode), {}
    image.save(tmp_path / "alpha.png", **save)
    decoded = load_rgb(tmp_path / "alpha.png", **LIMITS)
    assert (decoded[:20] == 255).all()
    np.testing.assert_array_equal(decoded[20:], np.asarray(image.convert("RGB"))[20:])


@pytest.mark.parametrize("mode,extension", [("1", "png"), ("L", "png"), ("P", "gif"), ("CMYK", "jpg"),
                                            ("RGB", "bmp"), ("RGB", "webp"), ("CMYK", "tif")])
def test_other_pixel_layouts_become_writable_rgb_uint8(tmp_path, mode, extension):
    Image.new("RGB", (64, 48), (255, 255, 255)).convert(mode).save(tmp_path / f"white.{extension}")
    decoded = load_rgb(tmp_path / f"white.{extension}", **LIMITS)
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8 and decoded.flags.writeable
    assert decoded.min() >= 250  # white stays white: no channel dropped or inverted


@pytest.mark.parametrize("content", [b"", b"hello, not a photo\n", b"<html>404</html>",
                                     np.random.default_rng(0).bytes(500),
                                     b"\x00\x00\x01\x00\x01\x00" + bytes(200)],
                         ids=["empty", "text", "html", "random", "ico header"])
def test_non_images_with_an_image_extension_are_not_an_image(tmp_path, content):
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(ImageRejected, match="^not an image: "):
        load_rgb(tmp_path / "x.jpg", **LIMITS)


def test_formats_outside_photo_formats_are_not_opened(tmp_path):
    # ICO and friends decode while opening, EPS runs Ghostscript: they are not photos anyway.
    for name in ("icon.ico", "drawing.eps"):
        Image.new("RGB", (64, 64), "white").save(tmp_path / name)
        with pytest.raises(ImageRejected, match="^not an image: "):
            load_rgb(tmp_path / name, **LIMITS)


def test_every_still_format_pillow_reads_is_a_photo_format():
    assert {"JPEG", "PNG", "PPM", "TGA", "PCX", "SGI", "JPEG2000", "QOI", "TIFF", "WEBP"} <= set(PHOTO_FORMATS)
    assert PHOTO_FORMATS[:2] == ("JPEG", "PNG")  # tried first: most photos are these


def test_a_one_bit_netpbm_bitmap_becomes_black_and_white_rgb(tmp_path):
    face = Image.open(FACE_PHOTO).convert("1")  # dithered
    face.save(tmp_path / "face.pbm")
    decoded = load_rgb(tmp_path / "face.pbm", **LIMITS)
    assert decoded.shape == (250, 250, 3) and set(np.unique(decoded)) == {0, 255}
    assert (decoded[..., 0] == np.asarray(face, dtype=np.uint8) * 255).all()


def test_what_is_not_a_readable_file_is_rejected_without_blocking(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    os.mkfifo(tmp_path / "pipe.jpg")  # opening a FIFO to read would wait for a writer forever
    os.symlink("nowhere.jpg", tmp_path / "broken.jpg")
    for name, reason in [("missing.jpg", "file not found"), ("broken.jpg", "file not found"),
                         ("folder.jpg", "not a file"), ("pipe.jpg", "not a file")]:
        with pytest.raises(ImageRejected, match=f"^{reason}: "):
            load_rgb(tmp_path / name, **LIMITS)


@pytest.mark.parametrize("format", ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"])
def test_a_file_cut_to_its_first_third_is_an_unreadable_image(tmp_path, format):
    buffer = io.BytesIO()
    Image.open(FACE_PHOTO).save(buffer, format)
    (tmp_path / "cut").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 3])
    with pytest.raises(ImageRejected, match="^unreadable image: OSError: "):
        load_rgb(tmp_path / "cut", **LIMITS)


def test_an_unexpected_error_while_decoding_is_a_reject_naming_its_type(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.png")
    monkeypatch.setattr(ImageOps, "exif_transpose", lambda image: 1 / 0)
    with pytest.raises(ImageRejected, match="^unreadable image: ZeroDivisionError: division by zero$"):
        load_rgb(tmp_path / "photo.png", **LIMITS)


def _writable(format: str) -> bool:
    try:
        Image.new("RGB", (120, 100)).save(io.BytesIO(), format)
    except (OSError, ValueError, KeyError):
        return False
    return True


# Formats Pillow only reads (SUN, PCD, FITS, ...) cannot be made here; their headers are parsed
# by the same Image.open.
@pytest.mark.parametrize("format", [name for name in PHOTO_FORMATS if _writable(name)])
def test_size_limits_are_checked_from_the_header_before_any_pixel_is_decoded(tmp_path, format, monkeypatch):
    path = tmp_path / f"photo.{format.lower()}"
    Image.new("RGB", (120, 100), "white").save(path, format)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda image: pytest.fail(f"{format} decoded"))
    with pytest.raises(ImageRejected, match="^image too large: 120x100 is 12000 pixels, over .* 11999 "):
        load_rgb(path, max_pixels=11_999, min_side=32)
    with pytest.raises(ImageRejected, match="^image too small: 120x100, under 101 px a side"):
        load_rgb(path, max_pixels=12_000, min_side=101)


def test_a_bomb_over_pils_own_ceiling_is_too_large_even_under_a_higher_limit(corpus):
    root, _ = corpus
    with pytest.raises(ImageRejected, match="^image too large: "):
        load_rgb(root / "Bob" / "bomb.png", max_pixels=10**12, min_side=32)


@pytest.mark.parametrize("side", [12_000, 20_000], ids=["over our limit", "over PIL's ceiling too"])
def test_a_bomb_is_rejected_within_a_memory_allowance_that_decoding_it_exceeds(tmp_path, side):
    (tmp_path / "bomb.png").write_bytes(png_bomb(side))
    # A fresh interpreter whose heap may grow by 64 MiB only; the bomb's pixels alone take
    # side² bytes (144 or 400 MB), so the control decode must run out of memory.
    script = textwrap.dedent(f"""
        import resource
        from PIL import Image
        from facerec.data.images import ImageRejected, load_rgb
        with open("/proc/self/status") as status:
            heap = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmData:"))
        resource.setrlimit(resource.RLIMIT_DATA, (heap + 64 * 2**20,) * 2)
        try:
            load_rgb({str(tmp_path / "bomb.png")!r}, max_pixels=40_000_000, min_side=32)
        except ImageRejected as reason:
            print(reason)
        Image.MAX_IMAGE_PIXELS = None
        try:
            Image.open({str(tmp_path / "bomb.png")!r}).load()
        except MemoryError:
            print("decoding it ran out of memory")
    """)
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", script],
                            capture_output=True, text=True, check=True)
    reason, control = result.stdout.splitlines()
    assert reason.startswith("image too large: ")
    assert control == "decoding it ran out of memory"
