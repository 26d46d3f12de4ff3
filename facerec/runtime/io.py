"""Atomic writers: a stage killed half-way never leaves a half-written output behind."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name, not mkstemp's file: that one is created owner-only (0600), and the writer
    # would keep that mode; a file the writer creates gets the usual umask mode.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_with(path: str | Path, writer: Callable[[Path], Any]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON (NaN is written as null)."""
    text = json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n"
    _write_with(path, lambda tmp: tmp.write_text(text))


def write_table(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as parquet or CSV, chosen by the file suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        _write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))
    elif path.suffix == ".csv":
        _write_with(path, lambda tmp: frame.to_csv(tmp, index=False))
    else:
        raise ValueError(f"{path}: unsupported table format (use .parquet or .csv)")


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    raise ValueError(f"{path}: unsupported table format (use .parquet or .csv)")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(item) for item in value]
    return value
