"""Contact sheets show a seeded, order-independent sample of real crops and rejects."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import LFW
from facerec.data.aligned import decode_crop, read_crop_bytes, write_crops
from facerec.faces.alignment import ARCFACE_TEMPLATE
from facerec.quality.contact_sheet import (
    COLUMNS,
    SCALE,
    TILE,
    aligned_sheet,
    grid_layout,
    reason_category,
    rejects_sheet,
    sample_aligned,
    sample_rejects,
)


@pytest.fixture(scope="module")
def aligned_lfw(small_project) -> Path:
    """Real aligned LFW crops from the pipeline run on the small real project (conftest)."""
    return small_project / "data" / "aligned" / "lfw"


@pytest.fixture(scope="module")
def manifest(aligned_lfw) -> pd.DataFrame:
    return pd.read_parquet(aligned_lfw / "manifest.parquet")


@pytest.fixture(scope="module")
def real_rejects(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    """Rejects of every kind load_rgb reports, on real LFW photos and files broken from them."""
    root = tmp_path_factory.mktemp("rejects")
    photos = sorted((LFW / "images" / "Aaron_Eckhart").glob("*.jpg")) + sorted(
        (LFW / "images" / "Abdullah_Gul").glob("*.jpg"))[:5]
    rows = [{"path": p.relative_to(LFW / "images").as_posix(), "identity": p.parent.name,
             "reason": "no face found with score >= 0.9"} for p in photos]
    (root / "notes.txt").write_text("not a photo\n")
    (root / "truncated.jpg").write_bytes(photos[0].read_bytes()[:2000])
    rows += [{"path": "notes.txt", "identity": "x", "reason": "not an image: the file format is not recognised"},
             {"path": "truncated.jpg", "identity": "x", "reason": "unreadable image: OSError: truncated"},
             {"path": "missing.jpg", "identity": "x", "reason": "unreadable image: FileNotFoundError"}]
    return pd.DataFrame(rows), root


def _locate(root: Path):
    return lambda path: (LFW / "images" / path) if "/" in path else (root / path)


def _tile(png: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """The TILE×TILE crop shown at ``origin`` (sheet units), sampled back to 1:1."""
    x, y = origin[0] * SCALE, origin[1] * SCALE
    return png[y:y + TILE * SCALE:SCALE, x:x + TILE * SCALE:SCALE, :3].astype(int)


def test_aligned_sheet_is_an_8_column_grid_of_the_sampled_crops_then_a_worst_row(aligned_lfw, manifest, tmp_path):
    out = tmp_path / "aligned.png"
    aligned_sheet(aligned_lfw, manifest, out, count=64, seed=0)
    layout = grid_layout([64, 8], caption_lines=2)
    png = np.asarray(Image.open(out))
    assert png.shape[:2] == (layout.height * SCALE, layout.width * SCALE)
    randoms, worst = layout.tile_origins
    assert len({x for x, _ in randoms}) == COLUMNS and len({y for _, y in randoms}) == 8
    assert len({y for _, y in worst}) == 1 and min(y for _, y in worst) > max(y for _, y in randoms)
    # The tiles are the sampled crops (apart from the few pixels under the template overlay).
    sample, worst_rows = sample_aligned(manifest, 64, COLUMNS, seed=0)
    for origin, path in [(randoms[0], sample.path[0]), (randoms[63], sample.path[63]),
                         (worst[0], worst_rows.path[0])]:
        crop = np.asarray(decode_crop(read_crop_bytes(aligned_lfw, [path])[0]), int)
        assert np.median(np.abs(_tile(png, origin) - crop)) <= 1


def test_same_seed_gives_the_same_png_whatever_the_manifest_row_order(aligned_lfw, manifest, tmp_path):
    shuffled = manifest.sample(frac=1.0, random_state=7)
    aligned_sheet(aligned_lfw, manifest, tmp_path / "a.png", count=16, seed=3)
    aligned_sheet(aligned_lfw, shuffled, tmp_path / "b.png", count=16, seed=3)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temp file left
    other, _ = sample_aligned(manifest, 16, COLUMNS, seed=4)
    assert list(other.path) != list(sample_aligned(manifest, 16, COLUMNS, seed=3)[0].path)


def test_worst_row_holds_the_highest_errors_and_the_random_sample_does_not_repeat_them(manifest):
    sample, worst = sample_aligned(manifest, 200, 8, seed=0)
    highest = manifest.nlargest(8, "alignment_error")
    assert list(worst.alignment_error) == sorted(highest.alignment_error, reverse=True)
    assert not set(sample.path) & set(worst.path)
    assert sample.path.is_monotonic_increasing and sample.path.is_unique and len(sample) == 200


def test_a_crop_that_is_not_112_pixels_is_an_error_naming_it(tmp_path):
    small = io.BytesIO()
    Image.new("RGB", (100, 100)).save(small, "JPEG")
    write_crops(tmp_path, ["small.jpg"], [small.getvalue()])
    table = pd.DataFrame({"path": ["small.jpg"], "source": ["s.jpg"], "identity": ["a"], "alignment_error": [1.0]})
    with pytest.raises(ValueError, match="small.jpg.*100x100"):
        aligned_sheet(tmp_path, table, tmp_path / "out.png", worst=0)


def test_reason_category_is_the_text_before_the_first_colon():
    assert reason_category("unreadable image: OSError: broken") == "unreadable image"
    assert reason_category("no face found with score >= 0.9") == "no face found with score >= 0.9"


def test_rejects_sample_covers_every_reason_category_even_when_count_is_smaller(real_rejects):
    rejects, _ = real_rejects
    categories = set(rejects.reason.map(reason_category))
    for count in (1, 5, 12, 100):
        sample = sample_rejects(rejects, count, seed=0)
        assert set(sample.category) == categories
        assert len(sample) == max(len(categories), min(count, len(rejects))) and sample.path.is_unique
    shuffled = rejects.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(sample_rejects(rejects, 5, seed=2), sample_rejects(shuffled, 5, seed=2))


def test_rejects_sheet_shows_real_photos_and_grey_placeholders_for_undecodable_files(real_rejects, tmp_path):
    rejects, root = real_rejects
    out = tmp_path / "rejects.png"
    rejects_sheet(rejects, _locate(root), out, count=32, seed=0)
    sample = sample_rejects(rejects, 32, seed=0)
    groups = [group for _, group in sample.groupby("category", sort=True)]
    layout = grid_layout([len(group) for group in groups], caption_lines=4)
    png = np.asarray(Image.open(out))
    assert png.shape[:2] == (layout.height * SCALE, layout.width * SCALE)
    for group, origins in zip(groups, layout.tile_origins):
        for path, origin in zip(group.path, origins):
            tile = _tile(png, origin)
            grey = np.mean(np.all(tile == 160, axis=2))
            if "/" in path:  # a real photo: a thumbnail, not a placeholder
                assert grey < 0.1, path
            else:  # not an image, truncated or missing: the placeholder (but for its label)
                assert grey > 0.8, path


def test_an_empty_rejects_table_writes_a_small_no_rejects_sheet(tmp_path):
    out = tmp_path / "metrics" / "rejects.png"
    rejects_sheet(pd.DataFrame(columns=["path", "identity", "reason"]), Path, out)
    with Image.open(out) as image:
        assert image.format == "PNG" and image.height < 200


def test_real_aligned_eyes_sit_on_the_template_eye_points(aligned_lfw, manifest):
    """The mean of 200 random real crops is darkest at the pupils: within 2 px of the template."""
    sample, _ = sample_aligned(manifest, 200, 0, seed=0)
    crops = read_crop_bytes(aligned_lfw, list(sample.path))
    mean = np.mean([np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), float) for jpeg in crops], axis=0)
    for eye_x, eye_y in ARCFACE_TEMPLATE[:2]:
        x0, y0 = round(eye_x) - 12, round(eye_y) - 15  # a window wider than the eye, over the brow
        window = mean[y0:y0 + 30, x0:x0 + 24]
        y, x = np.unravel_index(window.argmin(), window.shape)
        assert abs(y0 + y - eye_y) <= 2 and abs(x0 + x - eye_x) <= 2, (x0 + x, y0 + y)
