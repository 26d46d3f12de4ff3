"""Evaluation sets (params.yaml ``evaluate.sets``) as one self-contained folder each.

Every model is scored on the same faces: the ``evalset`` stage writes, per set,

- ``faces.parquet``: one row per face, in ``source`` order: ``source`` (the photo's path in
  the photo set, or the face's index in a .bin), ``identity``, ``jpeg`` (the aligned 112×112
  crop's bytes, what checkpoints embed), and for peers, which cut their own crops, the
  detection (``x1..y2``, ``lm*``) and the photo's ``photo_digest``;
- ``pairs.parquet``: the protocol's pairs (``protocol``, ``fold``, ``path1``, ``path2``,
  ``genuine``; an identities set has them only with its own pairs file);
- ``set.json``: its kind, the photo folder peers read, counts and the digests of the
  protocol files.

The crops' bytes and the photos' digests are in the folder, so a DVC stage that depends on
it alone reruns exactly when what a model would see changes; the photos themselves are read
from the photo set and checked against their digests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch

from facerec.config import BinSet, DetectParams, EvaluationSet, IdentitiesSet, LfwSet
from facerec.data.aligned import read_aligned_manifest, read_crop_bytes
from facerec.data.digests import check_photo, file_digest, read_photo_digests
from facerec.data.images import load_rgb
from facerec.data.lfw import read_pairs, read_pairs_table
from facerec.data.people import heldout_people
from facerec.data.sources import photo_location
from facerec.data.verification_bin import CROP_SIDE, decode_faces, read_verification_bin
from facerec.evaluation.protocols import protocol_faces
from facerec.faces.alignment import ARCFACE_TEMPLATE
from facerec.faces.manifest import LANDMARK_COLUMNS, subjects
from facerec.models.peers import PhotoFace
from facerec.runtime.io import read_table, write_json, write_table

FACES, PAIRS, INFO = "faces.parquet", "pairs.parquet", "set.json"
PAIR_COLUMNS = ["protocol", "fold", "path1", "path2", "genuine"]
BOX_COLUMNS = ["x1", "y1", "x2", "y2"]


class EvaluationSetError(ValueError):
    """An evaluation set that cannot be built or read; the message names the file."""


@dataclass
class EvaluationFaces:
    kind: str
    faces: pd.DataFrame
    pairs: pd.DataFrame
    info: dict

    def protocol(self, name: str) -> pd.DataFrame:
        """The pairs of one protocol (``view2``, ``view1_train``, ``view1_test``, ``bin``, ``pairs``)."""
        return self.pairs[self.pairs["protocol"] == name].drop(columns="protocol").reset_index(drop=True)

    def crops(self) -> torch.Tensor:
        """The aligned crops as uint8 RGB N×3×112×112, row i for face i."""
        return decode_faces(self.info["name"], list(self.faces["jpeg"]))

    def photo_faces(self) -> Iterator[PhotoFace]:
        """Each face as a peer reads it: its photo (checked against the recorded digest), box
        and landmarks. A .bin set has no photos: its aligned crop is the photo, the template
        its landmarks."""
        if self.info["photos"] is None:
            whole = np.array([0, 0, CROP_SIDE, CROP_SIDE], np.float32)
            for crop in self.crops().permute(0, 2, 3, 1).numpy():
                yield PhotoFace(crop, whole, ARCFACE_TEMPLATE.astype(np.float32))
            return
        boxes = self.faces[BOX_COLUMNS].to_numpy(np.float32)
        landmarks = self.faces[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(-1, 5, 2)
        for source, digest, box, points in zip(self.faces["source"], self.faces["photo_digest"], boxes, landmarks):
            location = photo_location(self.info["photos"], source)
            check_photo(location, digest, f"the evaluation set {self.info['name']!r} was built")
            photo = load_rgb(location, self.info["max_image_pixels"], self.info["min_image_side"])
            yield PhotoFace(photo, box, points)


def build_evaluation_set(name: str, spec: EvaluationSet, images: Path | None, detections: Path | None,
                         aligned_dir: Path | None, detect_params: DetectParams | None = None,
                         holdout_identities: int = 0) -> EvaluationFaces:
    """The faces and pairs of one evaluation set. Folder kinds read the photo set's
    ``images``, ``detections`` and ``aligned_dir`` (the detect and align outputs), and its
    ``detect_params``' decoding limits, under which peers read the photos again."""
    if isinstance(spec, BinSet):
        return _from_bin(name, spec.path)
    if images is None or detections is None or aligned_dir is None or detect_params is None:
        raise ValueError(f"evaluation set {name!r} ({spec.kind}) needs its photo set's folders")
    aligned = read_aligned_manifest(aligned_dir)
    if isinstance(spec, LfwSet):
        pairs = {"view2": read_pairs(spec.pairs)}
        if spec.view1_pairs:
            pairs.update(view1_train=read_pairs(spec.view1_pairs[0]), view1_test=read_pairs(spec.view1_pairs[1]))
        faces = protocol_faces(aligned, *pairs.values())
        protocol_files = [spec.pairs, *spec.view1_pairs]
    else:
        assert isinstance(spec, IdentitiesSet)
        if spec.people == "heldout":
            aligned = aligned[aligned["identity"].isin(heldout_people(aligned["identity"], holdout_identities))]
        faces = aligned
        pairs = {"pairs": read_pairs_table(spec.pairs)} if spec.pairs else {}
        protocol_files = [spec.pairs] if spec.pairs else []
    faces = _with_detections(faces.sort_values("source").reset_index(drop=True), detections, aligned_dir)
    table = pd.concat([frame.assign(protocol=protocol) for protocol, frame in pairs.items()], ignore_index=True
                      ) if pairs else pd.DataFrame(columns=PAIR_COLUMNS)
    info = {"name": name, "kind": spec.kind, "photos": str(images), "faces": int(len(faces)),
            "identities": int(faces["identity"].nunique()), "max_image_pixels": detect_params.max_image_pixels,
            "min_image_side": detect_params.min_image_side,
            "protocol_files": {str(path): file_digest(path) for path in protocol_files}}
    if not len(faces):
        raise EvaluationSetError(f"evaluation set {name!r}: none of its faces was detected and aligned")
    return EvaluationFaces(spec.kind, faces, table[PAIR_COLUMNS], info)


def _with_detections(faces: pd.DataFrame, detections: Path, aligned_dir: Path) -> pd.DataFrame:
    """The aligned faces with their crop's bytes, their subject's detection and their photo's digest."""
    detected = subjects(read_table(detections / "manifest.parquet")).set_index("path")
    rows = detected.loc[faces["source"], BOX_COLUMNS + LANDMARK_COLUMNS].reset_index(drop=True)
    crops = read_crop_bytes(aligned_dir, list(faces["path"]))
    digests = list(read_photo_digests(detections).loc[faces["source"]])
    return pd.concat([faces[["source", "identity"]].reset_index(drop=True),
                      pd.DataFrame({"jpeg": crops, "photo_digest": digests}), rows], axis=1)


def _from_bin(name: str, path: Path) -> EvaluationFaces:
    images, issame = read_verification_bin(path)
    sources = [f"{index:06d}" for index in range(len(images))]
    faces = pd.DataFrame({"source": sources, "identity": None, "jpeg": images, "photo_digest": None})
    for column in BOX_COLUMNS + LANDMARK_COLUMNS:
        faces[column] = np.nan
    folds = np.arange(len(issame)) * 10 // len(issame)  # insightface's 10 contiguous folds
    pairs = pd.DataFrame({"protocol": "bin", "fold": folds, "path1": sources[0::2], "path2": sources[1::2],
                          "genuine": issame})
    for index, encoded in enumerate(images):  # fail here, naming the face, rather than in every model's stage
        if cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR) is None:
            raise EvaluationSetError(f"{path}: image {index} cannot be decoded")
    info = {"name": name, "kind": "bin", "photos": None, "faces": len(images), "identities": None,
            "protocol_files": {str(path): file_digest(path)}}
    return EvaluationFaces("bin", faces, pairs, info)


def write_evaluation_set(folder: Path, evaluation: EvaluationFaces) -> None:
    write_table(folder / FACES, evaluation.faces)
    write_table(folder / PAIRS, evaluation.pairs)
    write_json(folder / INFO, evaluation.info)


def read_evaluation_info(folder: Path) -> dict:
    """The set's ``set.json``: its name, kind, photo folder, counts and protocol files."""
    try:
        info: dict = json.loads((folder / INFO).read_text())
    except FileNotFoundError:
        raise EvaluationSetError(f"{folder}: not an evaluation set (no {INFO}); run the evalset stage") from None
    return info


def read_evaluation_set(folder: Path) -> EvaluationFaces:
    info = read_evaluation_info(folder)
    return EvaluationFaces(info["kind"], read_table(folder / FACES), read_table(folder / PAIRS), info)
