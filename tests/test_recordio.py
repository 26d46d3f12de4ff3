"""insightface's train.rec/.idx read and written without mxnet, on real LFW photos."""

from __future__ import annotations

import pickle
import struct

import cv2
import numpy as np
import pytest

from conftest import LFW
from facerec.data.recordio import MAGIC, InsightFaceRecords, RecordIOError, RecordIOReader, pack_record, write_recordio

PHOTOS = sorted((LFW / "images" / "Colin_Powell").glob("*.jpg"))[:3] + sorted(
    (LFW / "images" / "Laura_Bush").glob("*.jpg"))[:2]


def _insightface_rec(tmp_path):
    """A train.rec laid out as insightface's: record 0 holds (first key after the images, …)."""
    labels = [0, 0, 0, 1, 1]
    records = [(0, pack_record([len(PHOTOS) + 1, len(PHOTOS) + 3], b""))]
    records += [(key, pack_record(label, path.read_bytes(), id=key))
                for key, (path, label) in enumerate(zip(PHOTOS, labels), start=1)]
    write_recordio(tmp_path / "train.rec", records)
    return labels


def test_a_written_rec_reads_back_as_the_same_photos_and_labels(tmp_path):
    labels = _insightface_rec(tmp_path)
    faces = InsightFaceRecords(tmp_path / "train.rec")
    assert len(faces) == len(PHOTOS)
    for index, path in enumerate(PHOTOS):
        image, label = faces[index]
        expected = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        assert image.dtype == np.uint8 and np.array_equal(image, expected)
        assert label == labels[index] == faces.label(index)
    reader = pickle.loads(pickle.dumps(faces.reader))  # as DataLoader workers receive it
    assert reader.read(2).payload == PHOTOS[1].read_bytes() and reader.read(2).id == 2


def test_a_record_split_at_the_magic_is_joined_back(tmp_path):
    """MXNet splits a payload where a 4-aligned word equals the magic and drops that word."""
    payload = pack_record(7.0, b"abcd" + struct.pack("<I", MAGIC) + b"tail")
    cut = payload.index(struct.pack("<I", MAGIC))
    first, rest = payload[:cut], payload[cut + 4:]
    with open(tmp_path / "split.rec", "wb") as file:
        for flag, part in ((1, first), (3, rest)):
            file.write(struct.pack("<II", MAGIC, (flag << 29) | len(part)) + part + b"\0" * (-len(part) % 4))
    (tmp_path / "split.idx").write_text("0\t0\n")
    record = RecordIOReader(tmp_path / "split.rec").read(0)
    assert record.label == 7.0 and record.payload == b"abcd" + struct.pack("<I", MAGIC) + b"tail"


def test_broken_files_are_errors_naming_the_file(tmp_path):
    _insightface_rec(tmp_path)
    (tmp_path / "train.idx").write_text("0\t0\nnot a line\n")
    with pytest.raises(RecordIOError, match=r"train.idx:2: expected 'key<TAB>offset'"):
        RecordIOReader(tmp_path / "train.rec")
    (tmp_path / "train.idx").write_text("0\t0\n1\t3\n")
    with pytest.raises(RecordIOError, match=r"train.rec: no record magic at byte 3 \(record 1\)"):
        RecordIOReader(tmp_path / "train.rec").read(1)
    with pytest.raises(FileNotFoundError, match="missing.idx: not found"):
        RecordIOReader(tmp_path / "train.rec", tmp_path / "missing.idx")
