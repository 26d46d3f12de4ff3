"""Photos by content: the digest of every photo a set's detection read.

The detect stage records them (``photos.parquet`` beside its manifest); every later step
that reads a photo again (align, the evaluation sets, the peers cutting their own crops)
checks it against its digest. So those DVC stages depend on detect's small output instead
of listing the photo folder again, and still cannot use a photo that changed since it was
detected.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from facerec.data.sources import photo_location
from facerec.runtime.io import read_table

PHOTOS = "photos.parquet"
_DIGEST_BYTES = 16


class PhotoChanged(ValueError):
    """A photo whose content is not the one its set was detected on."""


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 of the file's bytes, hex: the file's identity, whatever its name."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=_DIGEST_BYTES)).hexdigest()


def photo_digests(source: str | Path, paths: Iterable[str]) -> pd.DataFrame:
    """``path`` and ``digest`` of each photo of ``source`` named by ``paths``, sorted by path;
    the digest is None where the file cannot be read (it is in the rejects, with why)."""
    rows = []
    for path in sorted(set(paths)):
        try:
            digest: str | None = file_digest(photo_location(source, path))
        except OSError:
            digest = None
        rows.append({"path": path, "digest": digest})
    return pd.DataFrame(rows, columns=["path", "digest"])


def read_photo_digests(detections_dir: str | Path) -> pd.Series:
    """Each detected photo's digest, indexed by its path in the set."""
    location = Path(detections_dir) / PHOTOS
    if not location.is_file():
        raise FileNotFoundError(f"{location}: missing; rerun the detect stage (dvc repro detect)")
    return read_table(location).set_index("path")["digest"]


def check_photo(location: str | Path, digest: str, when: str) -> None:
    """Raise PhotoChanged, naming the file, if ``location``'s bytes are not the digested ones."""
    if file_digest(location) != digest:
        raise PhotoChanged(f"{location}: changed since {when}; rerun dvc repro")
