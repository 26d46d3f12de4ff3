"""PNG contact sheets of aligned crops and of rejected files, for a human to look at the data.

The sample on a sheet is a pure function of the table and the seed (``sample_aligned``,
``sample_rejects``); the drawing functions only load those files and lay them out.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from facerec.data.aligned import CROPS, decode_crop, read_crop_bytes
from facerec.data.images import ImageRejected, load_rgb
from facerec.faces.alignment import ARCFACE_TEMPLATE
from facerec.runtime.io import atomic_path

TILE = 112          # px; tiles are the crops at their own size (ArcFace 112×112)
COLUMNS = 8
GAP = 6             # sheet units between tiles
MARGIN = 8
SCALE = 2           # PNG pixels per sheet unit: 112-px crops are too small to judge at 1:1
FONT = 7            # pt; one sheet unit is one point, so a caption line is ~FONT units high
LINE = 9            # sheet units per caption line
TITLE_LINES = 2
EYE_Y = float(ARCFACE_TEMPLATE[:2, 1].mean())  # the template's eye line, px from the crop top
OVERLAY = "#00ff40"
# Rejected photos larger than this are shown as a placeholder: a thumbnail is not worth
# decoding a decompression bomb (the pipeline's own limit is 40 MP).
THUMBNAIL_MAX_PIXELS = 20_000_000
ALIGNED_COLUMNS = ["path", "identity", "alignment_error"]
REJECT_COLUMNS = ["path", "reason"]


@dataclass(frozen=True)
class Tile:
    """One tile: a TILE×TILE×3 RGB uint8 image (None for a grey placeholder) and its caption."""

    image: np.ndarray | None
    caption: str


@dataclass(frozen=True)
class Section:
    """A labelled run of tiles that starts on a new row; ``alert`` frames every tile in red."""

    label: str
    tiles: list[Tile]
    alert: bool = False


def reason_category(reason: str) -> str:
    """The kind of a reject: its reason up to the first ':' ("not an image: ..." -> "not an image")."""
    return reason.split(":", 1)[0].strip()


def sample_aligned(manifest: pd.DataFrame, count: int, worst: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(random, worst): ``worst`` rows of highest alignment_error, highest first, and a seeded
    random sample of ``count`` of the other rows in path order.

    Rows are sorted by path before sampling, so the result does not depend on row order.
    """
    _require_columns(manifest, ALIGNED_COLUMNS, "aligned manifest")
    ordered = manifest.sort_values("path", kind="stable").reset_index(drop=True)
    by_error = ordered.sort_values("alignment_error", ascending=False, kind="stable")
    worst_rows = by_error.head(worst)
    rest = ordered.drop(index=worst_rows.index)
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(len(rest), size=min(count, len(rest)), replace=False))
    return rest.iloc[picked].reset_index(drop=True), worst_rows.reset_index(drop=True)


def sample_rejects(rejects: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """A seeded sample of ``rejects`` with one row of every reason category, filled up at
    random to ``count`` rows (more only where there are more categories than ``count``).

    Returned sorted by (category, path) with a ``category`` column added; independent of row order.
    """
    _require_columns(rejects, REJECT_COLUMNS, "rejects table")
    ordered = rejects.assign(category=rejects["reason"].map(reason_category))
    ordered = ordered.sort_values(["category", "path", "reason"], kind="stable").reset_index(drop=True)
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(group.index) for _, group in ordered.groupby("category", sort=True)]
    rest = ordered.index.difference(chosen)
    fill = max(0, min(count, len(ordered)) - len(chosen))
    chosen += list(rng.choice(rest, size=fill, replace=False))
    return ordered.loc[sorted(chosen)].reset_index(drop=True)


def aligned_sheet(aligned_dir: Path, manifest: pd.DataFrame, out_png: Path, count: int = 64,
                  seed: int = 0, worst: int = COLUMNS) -> None:
    """Write a sheet of ``count`` random aligned crops and, in a red-framed last row, the
    ``worst`` crops of highest alignment error; every crop carries the ArcFace template's
    5 points and eye line (green), so a crop whose eyes are off the line stands out.

    ``manifest`` paths are relative to ``aligned_dir``; captions give identity and
    alignment error (mean landmark distance to the template, px).
    """
    aligned_dir = Path(aligned_dir)
    randoms, worst_rows = sample_aligned(manifest, count, worst, seed)
    sections = [Section(f"{len(randoms)} random crops (seed {seed}), in path order",
                        _aligned_tiles(aligned_dir, randoms))]
    if len(worst_rows):
        sections.append(Section(f"{len(worst_rows)} worst aligned (highest alignment error)",
                                _aligned_tiles(aligned_dir, worst_rows), alert=True))
    errors = manifest["alignment_error"]
    title = (f"aligned {aligned_dir.name}: {len(manifest)} crops"
             + (f", alignment error median {errors.median():.2f} px, max {errors.max():.2f} px"
                if len(manifest) else " (none)")
             + f"\ngreen: ArcFace template points and eye line (y = {EYE_Y:.1f} px);"
             " the eyes should sit on the line")
    _draw(title, sections, caption_lines=2, template=True, out_png=out_png)


def rejects_sheet(rejects: pd.DataFrame, locate: Callable[[str], Path], out_png: Path,
                  count: int = 32, seed: int = 0) -> None:
    """Write a sheet of rejected files, one row block per reason category, each captioned
    with its path and wrapped reason; files that cannot be decoded safely show as grey
    placeholders. ``locate(path)`` is the file of a ``rejects`` path. An empty table writes
    a small "no rejects" sheet, so the output always exists.
    """
    sample = sample_rejects(rejects, count, seed)
    totals = rejects["reason"].map(reason_category).value_counts()
    sections = [Section(f"{category}: {len(group)} shown of {totals[category]}",
                        [_reject_tile(locate(row.path), row.path, row.reason)
                         for row in group.itertuples(index=False)])
                for category, group in sample.groupby("category", sort=True)]
    title = (f"rejects: {len(sample)} shown of {len(rejects)} (seed {seed}),"
             f" {len(totals)} reason categories" if len(rejects) else "no rejects")
    _draw(title, sections, caption_lines=4, template=False, out_png=out_png)


def _require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing} (has {list(frame.columns)})")


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _aligned_tiles(aligned_dir: Path, rows: pd.DataFrame) -> list[Tile]:
    tiles = []
    for row, jpeg in zip(rows.itertuples(index=False), read_crop_bytes(aligned_dir, list(rows["path"]))):
        crop = decode_crop(jpeg)
        if crop.shape != (TILE, TILE, 3):
            raise ValueError(f"{aligned_dir / CROPS}, {row.path}: aligned crop is {crop.shape[1]}x{crop.shape[0]}, "
                             f"expected {TILE}x{TILE}; re-run the align stage")
        tiles.append(Tile(crop, f"{_shorten(str(row.identity), 28)}\nerror {row.alignment_error:.2f} px"))
    return tiles


def _reject_tile(file: Path, path: str, reason: str) -> Tile:
    """A thumbnail of ``file`` captioned with the tail of its table ``path`` and its reason."""
    # The tail names the file: the identity folder alone does not find it.
    name = path if len(path) <= 28 else "…" + path[-27:]
    caption = "\n".join([name, *textwrap.wrap(reason, 28, max_lines=3, placeholder=" …")])
    try:
        image = load_rgb(file, THUMBNAIL_MAX_PIXELS, 1)
    except ImageRejected:  # load_rgb answers every bad or missing file with this
        return Tile(None, caption)
    return Tile(_thumbnail(image), caption)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """``image`` shrunk to fit TILE×TILE, keeping its aspect ratio, centred on grey."""
    thumb = Image.fromarray(image)
    thumb.thumbnail((TILE, TILE), Image.Resampling.BILINEAR)
    tile = Image.new("RGB", (TILE, TILE), (128, 128, 128))
    tile.paste(thumb, ((TILE - thumb.width) // 2, (TILE - thumb.height) // 2))
    return np.asarray(tile)


@dataclass(frozen=True)
class Layout:
    """Where everything goes on a sheet, in sheet units (the PNG has SCALE pixels per unit)."""

    width: int
    height: int
    label_tops: list[int]                      # one per section
    tile_origins: list[list[tuple[int, int]]]  # per section, (x, y) of each tile's top-left


def grid_layout(section_sizes: list[int], caption_lines: int) -> Layout:
    """A title band, then each section as a label over COLUMNS-wide rows of captioned tiles."""
    cell_h = TILE + caption_lines * LINE + GAP
    y = MARGIN + TITLE_LINES * LINE + GAP
    label_tops, origins = [], []
    for size in section_sizes:
        label_tops.append(y)
        y += LINE + 2
        origins.append([(MARGIN + (index % COLUMNS) * (TILE + GAP), y + (index // COLUMNS) * cell_h)
                        for index in range(size)])
        y += -(-size // COLUMNS) * cell_h
    return Layout(2 * MARGIN + COLUMNS * TILE + (COLUMNS - 1) * GAP, y + MARGIN, label_tops, origins)


def _draw(title: str, sections: list[Section], caption_lines: int, template: bool, out_png: Path) -> None:
    """Draw the sections on a grid_layout sheet and save it as PNG (atomically)."""
    layout = grid_layout([len(section.tiles) for section in sections], caption_lines)
    width, height = layout.width, layout.height
    placed = [(x, top, tile, section.alert) for section, origins in zip(sections, layout.tile_origins)
              for (x, top), tile in zip(origins, section.tiles)]

    canvas = np.full((height, width, 3), 255, np.uint8)
    for x, top, tile, alert in placed:
        if alert:
            canvas[top - 2:top + TILE + 2, x - 2:x + TILE + 2] = (220, 30, 30)
        canvas[top:top + TILE, x:x + TILE] = tile.image if tile.image is not None else 160

    # One sheet unit is one point (figure inches = units / 72), drawn at SCALE pixels per unit.
    figure = Figure(figsize=(width / 72, height / 72), dpi=72 * SCALE)
    FigureCanvasAgg(figure)
    axis = figure.add_axes((0, 0, 1, 1))
    axis.imshow(canvas, interpolation="nearest", extent=(0, width, height, 0))
    axis.set_axis_off()
    text: dict[str, Any] = {"fontsize": FONT, "va": "top", "ha": "left", "linespacing": 1.1}
    axis.text(MARGIN, MARGIN, title, **{**text, "fontsize": FONT + 1, "fontweight": "bold"})
    for top, section in zip(layout.label_tops, sections):
        axis.text(MARGIN, top, section.label, **{**text, "fontweight": "bold"})
    for x, top, tile, _ in placed:
        axis.text(x, top + TILE + 1, tile.caption, **text)
        if tile.image is None:
            axis.text(x + TILE / 2, top + TILE / 2, "no preview", **{**text, "ha": "center", "va": "center"})
    if template and placed:
        xs = np.array([x for x, *_ in placed], float)
        tops = np.array([top for _, top, *_ in placed], float)
        # +0.5: template coordinates are pixel centres (OpenCV convention), pixel i spans [i, i+1].
        axis.hlines(tops + EYE_Y + 0.5, xs, xs + TILE, colors=OVERLAY, linewidths=0.5, alpha=0.8)
        points = (ARCFACE_TEMPLATE + 0.5)[None] + np.stack([xs, tops], 1)[:, None]
        axis.scatter(points[..., 0].ravel(), points[..., 1].ravel(), s=6, facecolors="none",
                     edgecolors=OVERLAY, linewidths=0.6)
    axis.set_xlim(0, width)
    axis.set_ylim(height, 0)
    with atomic_path(out_png) as tmp:
        figure.savefig(tmp, format="png", dpi=72 * SCALE)
