"""List the photos of a photo set: a folder of identity sub-folders, or a CSV/parquet list.

A source is either

- a folder laid out like ImageFolder or LFW, ``root/<identity>/<files>``: every regular
  file under it, with files in deeper sub-folders belonging to the first-level identity;
- a ``.csv`` or ``.parquet`` list with columns ``path`` and ``identity`` (others ignored):
  relative paths are resolved against the list file's folder, absolute ones kept.

Every file or row comes out as one :class:`PhotoFile`. Problems that the listing alone
reveals (no identity, a duplicate row, an undecodable file name, an unreadable folder) do
not stop the listing: they come out in ``reject_reason`` so that the caller records them
with the decoding rejects. Problems with the source itself (missing, unreadable, missing a
column) raise :class:`PhotoSourceError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

LIST_COLUMNS = ("path", "identity")


class PhotoSourceError(ValueError):
    """The photo source itself is unusable; the message names the file and what to fix."""


@dataclass(frozen=True)
class PhotoFile:
    """One input photo.

    ``path`` is the name recorded in manifests: the POSIX path relative to a folder source,
    or the path exactly as written in a list. ``location`` is the absolute path to open.
    ``reject_reason`` is set (``"category: detail"``) when the listing already shows that the
    file must be rejected; such a file need not be opened.
    """

    path: str
    identity: str | None
    location: Path
    reject_reason: str | None = None


def iter_photos(source: str | Path) -> Iterator[PhotoFile]:
    """The photos of ``source``, a folder or a ``.csv``/``.parquet`` list (see the module).

    A folder is streamed in ``os.walk`` order with names sorted (a folder's files, then its
    sub-folders), following symbolic links but never into a folder it is already inside. A
    list is read at once, its rows sorted by ``path``. Raises PhotoSourceError now, not
    when iterating, if the source is missing or unreadable.
    """
    source = Path(source)
    if source.is_dir():
        if not os.access(source, os.R_OK | os.X_OK):
            raise PhotoSourceError(f"{source}: photo folder cannot be read")
        return _walk_folder(source)
    if source.suffix.lower() in (".csv", ".parquet"):
        return iter(_read_list(source))
    problem = "not a folder or a .csv/.parquet list" if source.exists() else "not found"
    raise PhotoSourceError(f"{source}: {problem}; a photo source is a folder of identity "
                           f"sub-folders or a .csv/.parquet list with columns path, identity")


def photo_location(source: str | Path, path: str) -> Path:
    """Where the photo recorded as ``path`` for ``source`` lives (absolute, not resolved
    through links): relative to a folder source, or to a list file's folder."""
    source = Path(source)
    return _resolve(source if source.is_dir() else source.parent, path)


def _resolve(base: Path, path: str) -> Path:
    return Path(os.path.normpath(os.path.join(os.path.abspath(base), path)))


def _walk_folder(root: Path) -> Iterator[PhotoFile]:
    root = Path(os.path.abspath(root))
    unreadable: list[OSError] = []
    # Each pending folder maps to the (device, inode) of itself and its ancestors: a
    # symbolic link back to one of them is a cycle, whose files are listed already.
    ancestors = {str(root): frozenset([_folder_key(root)])}
    for folder, subfolders, files in os.walk(root, onerror=unreadable.append, followlinks=True):
        yield from _unreadable_folders(root, unreadable)
        inside = ancestors.pop(folder)
        kept = []
        for name in sorted(subfolders):
            subfolder = os.path.join(folder, name)
            key = _folder_key(subfolder)
            if key in inside:
                continue
            # A folder that cannot be stat'ed is kept: os.walk then reports it as unreadable.
            ancestors[subfolder] = inside if key is None else inside | {key}
            kept.append(name)
        subfolders[:] = kept
        for name in sorted(files):
            yield _folder_photo(root, Path(folder, name))
    yield from _unreadable_folders(root, unreadable)


def _folder_key(path: str | Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _folder_photo(root: Path, location: Path, reason: str | None = None) -> PhotoFile:
    """The photo at ``location`` under ``root``; the first applicable reason is kept."""
    parts = location.relative_to(root).parts
    path = "/".join(parts)
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        # Names that are not UTF-8 arrive as surrogates, which a manifest cannot store.
        path = os.fsencode(path).decode("utf-8", "backslashreplace")
        reason = "bad file name: not valid UTF-8; rename it"
    identity = path.split("/")[0] if len(parts) > 1 else None
    if identity is None and reason is None:
        reason = "no identity: not inside an identity folder"
    return PhotoFile(path, identity, location, reason)


def _unreadable_folders(root: Path, errors: list[OSError]) -> Iterator[PhotoFile]:
    """Folders that os.walk could not list: their files cannot be accounted for one by one."""
    for error in errors:
        yield _folder_photo(root, Path(error.filename),
                            f"unreadable folder: {error.strerror}; its files are not listed")
    errors.clear()


def _read_list(list_path: Path) -> list[PhotoFile]:
    """The rows of a photo list, sorted by path; rows are numbered from 1 after the header.

    A row naming the same file as an earlier row (after normalising its path) keeps the
    first and comes out with a ``duplicate`` reject reason, so that it is accounted for
    without the file being counted twice.
    """
    table = _read_table(list_path)
    missing = [column for column in LIST_COLUMNS if column not in table.columns]
    if missing:
        raise PhotoSourceError(f"{list_path}: no column {' or '.join(map(repr, missing))}; a photo list "
                               f"needs columns 'path' and 'identity', found {list(map(str, table.columns))}")
    first_row: dict[Path, tuple[int, str]] = {}
    photos = []
    for row, (path, identity) in enumerate(zip(table["path"], table["identity"], strict=True), start=1):
        if pd.isna(path) or str(path) == "":
            raise PhotoSourceError(f"{list_path}: row {row} has an empty path")
        path = str(path)
        identity = None if pd.isna(identity) or str(identity) == "" else str(identity)
        location = _resolve(list_path.parent, path)
        reason = None
        if location in first_row:
            earlier_row, earlier_path = first_row[location]
            reason = f"duplicate: same file as row {earlier_row} ({earlier_path})"
        else:
            first_row[location] = row, path
            if identity is None:
                reason = f"no identity: row {row} of the list gives none"
        photos.append(PhotoFile(path, identity, location, reason))
    return sorted(photos, key=lambda photo: photo.path)


def _read_table(list_path: Path) -> pd.DataFrame:
    try:
        if list_path.suffix.lower() == ".csv":
            # Strings as written ("007" stays "007"); utf-8-sig drops the BOM spreadsheets add.
            return pd.read_csv(list_path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        # Arrow types keep an integer column with nulls integer ("7", not "7.0").
        return pd.read_parquet(list_path, dtype_backend="pyarrow")
    except FileNotFoundError:
        raise PhotoSourceError(f"{list_path}: photo list not found") from None
    except Exception as error:  # noqa: BLE001  (whatever the reader says, the list is unusable)
        raise PhotoSourceError(f"{list_path}: cannot read the photo list: "
                               f"{type(error).__name__}: {error}") from error
