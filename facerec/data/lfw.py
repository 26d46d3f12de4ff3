"""LFW's View 2 protocol file (``pairs.txt``): folds of matched and mismatched pairs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def lfw_image_path(name: str, number: str | int) -> str:
    """Relative path of image ``number`` of ``name`` in the LFW folder layout."""
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: str | Path) -> pd.DataFrame:
    """Parse a pairs file into columns fold, path1, path2, genuine (paths relative to the
    images root): View 2's pairs.txt, or View 1's pairsDevTrain.txt / pairsDevTest.txt.

    The first line gives the number of folds and of matched (= mismatched) pairs per fold
    (View 1's files give only the latter: one fold); each fold lists its matched pairs
    ``name i j`` then its mismatched pairs ``name1 i name2 j``.
    """
    path = Path(path)
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    try:
        header = [int(value) for value in lines[0]]
        folds, per_class = header if len(header) == 2 else (1, *header)
    except (ValueError, IndexError, TypeError):
        raise ValueError(f"{path}:1: expected a header '[folds] pairs_per_class', got {lines[:1]}") from None
    expected = folds * per_class * 2
    if len(lines) - 1 != expected:
        raise ValueError(f"{path}: header promises {expected} pairs, file has {len(lines) - 1}")
    rows = []
    for line_number, fields in enumerate(lines[1:], start=2):
        fold = (line_number - 2) // (2 * per_class)
        if len(fields) == 3:
            rows.append((fold, lfw_image_path(fields[0], fields[1]), lfw_image_path(fields[0], fields[2]), True))
        elif len(fields) == 4:
            rows.append((fold, lfw_image_path(fields[0], fields[1]), lfw_image_path(fields[2], fields[3]), False))
        else:
            raise ValueError(f"{path}:{line_number}: expected 3 or 4 fields, got {fields}")
    return pd.DataFrame(rows, columns=["fold", "path1", "path2", "genuine"])


def read_pairs_table(path: str | Path, folds: int = 10) -> pd.DataFrame:
    """A pairs file of any identity set: LFW's format (:func:`read_pairs`), or a ``.csv`` with
    columns path1, path2, genuine (paths as the photo set records them) and optionally fold;
    without a fold column, ``folds`` contiguous folds as insightface makes them."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        return read_pairs(path)
    table = pd.read_csv(path)
    missing = sorted({"path1", "path2", "genuine"} - set(table.columns))
    if missing:
        raise ValueError(f"{path}: a pairs table needs columns path1, path2, genuine; missing {', '.join(missing)}")
    if "fold" not in table:
        table["fold"] = [index * folds // len(table) for index in range(len(table))]
    genuine = table["genuine"].astype(str).str.lower().map({"true": True, "1": True, "false": False, "0": False})
    if genuine.isna().any():
        raise ValueError(f"{path}: genuine must be true/false or 1/0 (row {int(genuine.isna().idxmax()) + 2})")
    return table.assign(genuine=genuine.astype(bool))[["fold", "path1", "path2", "genuine"]]
