"""Photos in every format decode to upright RGB; anything else is rejected with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facerec.data.images import ImageRejected, iter_photo_files, load_rgb

LIMITS = dict(max_pixels=40_000_000, min_side=32)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P", "I;16", "LA"])
def test_every_pixel_format_becomes_rgb_uint8(tmp_path, mode):
    path = tmp_path / f"photo_{mode.replace(';', '')}.{'tiff' if mode in ('CMYK', 'I;16') else 'png'}"
    Image.new("RGB", (64, 48), (200, 120, 40)).convert(mode).save(path)
    array = load_rgb(path, **LIMITS)
    assert array.shape == (48, 64, 3) and array.dtype == np.uint8
    assert array.mean() > 20  # not blacked out by a bad conversion


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (80, 40), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert load_rgb(tmp_path / "rotated.jpg", **LIMITS).shape == (80, 40, 3)


def test_first_frame_of_an_animation_is_used(tmp_path):
    frames = [Image.new("RGB", (50, 50), colour) for colour in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    array = load_rgb(tmp_path / "anim.gif", **LIMITS)
    assert array.shape == (50, 50, 3) and array[..., 0].mean() > 200


@pytest.mark.parametrize("content,reason", [
    (b"", "not an image"),
    (b"hello, not a photo", "not an image"),
])
def test_non_images_are_rejected(tmp_path, content, reason):
    (tmp_path / "x.jpg").write_bytes(content)
    with pytest.raises(ImageRejected, match=reason):
        load_rgb(tmp_path / "x.jpg", **LIMITS)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_truncated_tiny_and_huge_images_are_rejected(tmp_path):
    Image.new("RGB", (300, 300), "green").save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageRejected, match="unreadable image"):
        load_rgb(tmp_path / "cut.jpg", **LIMITS)
    Image.new("RGB", (20, 200)).save(tmp_path / "thin.png")
    with pytest.raises(ImageRejected, match="too small"):
        load_rgb(tmp_path / "thin.png", **LIMITS)
    # A decompression bomb is refused from its header, before any pixel is decoded.
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    with pytest.raises(ImageRejected, match="too large"):
        load_rgb(tmp_path / "bomb.png", **LIMITS)


def test_files_are_listed_with_their_identity_folder(tmp_path):
    for relative in ["b/2.jpg", "a/1.jpg", "a/deeper/3.jpg", "loose.jpg", "c d/é 4.JPG"]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    found = [(f.path, f.identity) for f in iter_photo_files(tmp_path)]
    assert found == [("loose.jpg", None), ("a/1.jpg", "a"), ("a/deeper/3.jpg", "a"),
                     ("b/2.jpg", "b"), ("c d/é 4.JPG", "c d")]
