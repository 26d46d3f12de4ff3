"""Per-file results keyed by file content, so that a rerun only processes new or changed files.

A result is stored under (content digest, fingerprint): the fingerprint names everything
else the result depends on (the step's parameters and code version), so changing either
simply misses the cache. As in DVC's state database, a file whose size and modification
time are unchanged keeps its remembered digest instead of being read and hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from facerec.data.digests import file_digest

__all__ = ["ResultCache", "file_digest", "fingerprint"]

_DIGEST_BYTES = 16


def fingerprint(*parts: object) -> str:
    """A short stable digest of JSON-serialisable parameters."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_BYTES).hexdigest()


class ResultCache:
    """JSON results in a SQLite file, looked up by content digest under one fingerprint."""

    def __init__(self, path: str | Path, fingerprint_: str) -> None:
        self.path = Path(path)
        self.fingerprint = fingerprint_
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS results (digest TEXT, fingerprint TEXT, result TEXT, "
                         "PRIMARY KEY (digest, fingerprint))")
        self._db.execute("CREATE TABLE IF NOT EXISTS files (location TEXT PRIMARY KEY, size INTEGER, "
                         "mtime_ns INTEGER, digest TEXT)")
        self._db.commit()

    def digests(self, locations: Iterable[Path]) -> list[str | None]:
        """Content digest of each file (None where it cannot be read), reusing the remembered
        digest of files whose size and modification time have not changed."""
        names = [str(location) for location in locations]
        marks = ",".join("?" * len(names))
        known = {row[0]: row[1:] for row in self._db.execute(
            f"SELECT location, size, mtime_ns, digest FROM files WHERE location IN ({marks})", names)}
        digests: list[str | None] = []
        updates = []
        for location in names:
            try:
                stat = os.stat(location)
                remembered = known.get(location)
                if remembered and remembered[:2] == (stat.st_size, stat.st_mtime_ns):
                    digests.append(remembered[2])
                    continue
                digest = file_digest(location)
            except OSError:
                digests.append(None)
                continue
            digests.append(digest)
            updates.append((location, stat.st_size, stat.st_mtime_ns, digest))
        self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", updates)
        self._db.commit()
        return digests

    def get_many(self, digests: Iterable[str | None]) -> dict[str, dict]:
        """The stored results of ``digests`` that have one; None (an unreadable file) is skipped."""
        digests = list({digest for digest in digests if digest})
        found: dict[str, dict] = {}
        for start in range(0, len(digests), 500):  # SQLite caps the number of bound variables
            chunk = digests[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT digest, result FROM results WHERE fingerprint = ? AND digest IN ({marks})",
                                    [self.fingerprint, *chunk])
            found.update((digest, json.loads(result)) for digest, result in rows)
        return found

    def put_many(self, results: dict[str, dict]) -> None:
        self._db.executemany("INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
                             [(digest, self.fingerprint, json.dumps(result)) for digest, result in results.items()])
        self._db.commit()

    def close(self) -> None:
        self._db.close()
