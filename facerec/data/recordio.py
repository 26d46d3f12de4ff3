"""insightface's training sets in MXNet RecordIO (``train.rec`` + ``train.idx``), read and
written without mxnet.

The format, as MXNet's ``recordio`` module writes it:

- ``.rec``: records one after another, each a little-endian uint32 magic ``0xced7230a``, a
  uint32 whose top 3 bits are a continuation flag (0 whole, 1 first, 2 middle, 3 last part
  of a record split where its payload held the magic) and low 29 bits the part's length,
  then the payload padded with zeros to a multiple of 4 bytes.
- ``.idx``: one ``key<TAB>byte offset`` line per record.
- Each payload starts with an ``IRHeader`` (uint32 flag, float32 label, uint64 id, uint64
  id2); when flag > 0, flag float32 labels follow and replace ``label``; then the image
  file's bytes (JPEG or PNG).
- insightface's convention: record 0 is a header only record whose labels are
  ``(first key after the images, …)``; images are keys 1..labels[0]−1, labels identities.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facerec.runtime.io import atomic_path

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<IfQQ")
_LENGTH_BITS = 29


class RecordIOError(ValueError):
    """A .rec/.idx pair that does not follow the format; the message names the file and offset."""


@dataclass(frozen=True)
class Record:
    labels: tuple[float, ...]  # one label, or the ``flag`` labels of the header
    id: int
    id2: int
    payload: bytes  # the image file's bytes (empty for insightface's record 0)

    @property
    def label(self) -> float:
        return self.labels[0]


def pack_record(labels: float | Iterable[float], payload: bytes, id: int = 0, id2: int = 0) -> bytes:
    """The payload of one record: IRHeader (and extra labels) then ``payload``."""
    values = [float(labels)] if isinstance(labels, (int, float)) else [float(value) for value in labels]
    if len(values) == 1:
        return _HEADER.pack(0, values[0], id, id2) + payload
    return _HEADER.pack(len(values), 0.0, id, id2) + struct.pack(f"<{len(values)}f", *values) + payload


def unpack_record(data: bytes) -> Record:
    if len(data) < _HEADER.size:
        raise RecordIOError(f"record of {len(data)} bytes is shorter than its {_HEADER.size}-byte header")
    flag, label, id, id2 = _HEADER.unpack_from(data)
    if flag == 0:
        return Record((label,), id, id2, data[_HEADER.size:])
    end = _HEADER.size + 4 * flag
    return Record(struct.unpack_from(f"<{flag}f", data, _HEADER.size), id, id2, data[end:])


class RecordIOReader:
    """Random access to the records of a ``.rec`` file through its ``.idx``.

    The file is memory-mapped on first use in each process, so a reader can be handed to
    DataLoader workers (it pickles as its paths).
    """

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path else self.rec_path.with_suffix(".idx")
        for path in (self.rec_path, self.idx_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: not found")
        self.offsets = self._read_index()
        self._map: mmap.mmap | None = None

    def _read_index(self) -> dict[int, int]:
        offsets = {}
        for number, line in enumerate(self.idx_path.read_text().splitlines(), start=1):
            fields = line.split("\t")
            if not line.strip():
                continue
            try:
                key, offset = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise RecordIOError(f"{self.idx_path}:{number}: expected 'key<TAB>offset', got {line!r}") from None
            offsets[key] = offset
        return offsets

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __len__(self) -> int:
        return len(self.offsets)

    def keys(self) -> list[int]:
        return sorted(self.offsets)

    def read(self, key: int) -> Record:
        if key not in self.offsets:
            raise KeyError(f"{self.idx_path}: no record {key}")
        if self._map is None:
            with open(self.rec_path, "rb") as file:
                self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        offset, parts = self.offsets[key], []
        while True:
            if offset + 8 > len(self._map):
                raise RecordIOError(f"{self.rec_path}: record {key} runs past the end of the file at byte {offset}")
            magic, word = struct.unpack_from("<II", self._map, offset)
            if magic != MAGIC:
                raise RecordIOError(f"{self.rec_path}: no record magic at byte {offset} (record {key})")
            flag, length = word >> _LENGTH_BITS, word & ((1 << _LENGTH_BITS) - 1)
            parts.append(self._map[offset + 8:offset + 8 + length])
            offset += 8 + length + (-length % 4)
            if flag in (0, 3):
                break
            # A split record lost the magic bytes it was cut at: put them back between parts.
            parts.append(struct.pack("<I", MAGIC))
        return unpack_record(b"".join(parts))


def write_recordio(rec_path: str | Path, records: Iterable[tuple[int, bytes]],
                   idx_path: str | Path | None = None) -> None:
    """Write ``(key, payload)`` records (payloads from :func:`pack_record`) and their index,
    each file atomically. Payloads are written whole (flag 0); MXNet reads them either way."""
    rec_path = Path(rec_path)
    idx_path = Path(idx_path) if idx_path else rec_path.with_suffix(".idx")
    lines = []
    with atomic_path(rec_path) as tmp, open(tmp, "wb") as file:
        for key, payload in records:
            if len(payload) >= 1 << _LENGTH_BITS:
                raise ValueError(f"record {key}: {len(payload)} bytes exceed RecordIO's 2^29 − 1")
            lines.append(f"{key}\t{file.tell()}")
            file.write(struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4))
    with atomic_path(idx_path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


class InsightFaceRecords:
    """The faces of an insightface ``train.rec``: RGB uint8 images and integer identity labels."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.reader = RecordIOReader(rec_path, idx_path)
        first = self.reader.read(0) if 0 in self.reader.offsets else None
        if first is not None and not first.payload and len(first.labels) >= 2:
            self.keys = list(range(1, int(first.labels[0])))
        else:
            self.keys = self.reader.keys()

    def __len__(self) -> int:
        return len(self.keys)

    def label(self, index: int) -> int:
        return int(self.reader.read(self.keys[index]).label)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        record = self.reader.read(self.keys[index])
        image = cv2.imdecode(np.frombuffer(record.payload, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RecordIOError(f"{self.reader.rec_path}: record {self.keys[index]} holds no decodable image")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), int(record.label)
