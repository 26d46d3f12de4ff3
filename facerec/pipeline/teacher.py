"""Stage teacher: the embeddings of the training faces by ``train.teacher`` (a zoo entry),
computed once for the train and tune stages to distil from.

The teacher sees each face as the evaluation shows it to that model (a checkpoint embeds
the aligned crop and its mirror image; a peer cuts its own crop from the photo at our
detection), so its targets are the embeddings it is ranked by on the leaderboard. The one
flip-summed embedding is the target of every augmented view of the face. The stage depends
on ``train.teacher`` and the zoo, not on the student's parameters: retraining the student
never re-runs the teacher. Without a teacher it writes an empty table.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer

from facerec.config import IdentitiesSet, Params
from facerec.data.aligned import read_aligned_manifest
from facerec.evaluation.sets import build_evaluation_set
from facerec.models.zoo import missing_checkpoint, resolve_model
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record
from facerec.pipeline.evaluate import embed_evaluation_set
from facerec.runtime.io import read_table, write_json, write_table

log = logging.getLogger(__name__)

EMBEDDINGS, INFO = "embeddings.parquet", "teacher.json"


def teacher_embeddings(settings: Params, aligned_dir: Path, detections_dir: Path) -> pd.DataFrame:
    """One row per aligned training face (index: its ``path`` in the aligned manifest), the
    teacher's L2-normalised embedding in columns 0..D-1; empty without a teacher."""
    name = settings.train.teacher
    if name is None:
        return pd.DataFrame(index=pd.Index([], name="path"))
    model = resolve_model(name, settings)
    reason = missing_checkpoint(model)
    if reason is not None:
        raise FileNotFoundError(f"train.teacher {name}: {reason}")
    photo_set = settings.data.train_set
    evaluation = build_evaluation_set(photo_set, IdentitiesSet(kind="identities", photos=photo_set),
                                      settings.data.sets[photo_set].images, detections_dir, aligned_dir,
                                      settings.detect_params(photo_set))
    log.info("teacher %s on the %d faces of %s", name, len(evaluation.faces), photo_set)
    embeddings = embed_evaluation_set(model, evaluation, settings.evaluate, settings.compute)
    path_of = read_aligned_manifest(aligned_dir).set_index("source")["path"]
    index = pd.Index(path_of.loc[evaluation.faces["source"]].to_numpy(), name="path")
    table = pd.DataFrame(embeddings.astype(np.float32), index=index)
    table.columns = [str(column) for column in table.columns]
    return table


def read_teacher(folder: Path, teacher: str | None) -> pd.DataFrame | None:
    """The teacher stage's embeddings (index: the face's path), or None without a teacher. A
    folder written for another teacher is an error that says to rerun the stage."""
    if teacher is None:
        return None
    info_path = folder / INFO
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path}: not found: run the teacher stage (dvc repro teacher)")
    written_for = json.loads(info_path.read_text())["teacher"]
    if written_for != teacher:
        raise ValueError(f"{folder}: holds the embeddings of {written_for!r}, not train.teacher {teacher!r}: "
                         "run the teacher stage (dvc repro teacher)")
    return read_table(folder / EMBEDDINGS).set_index("path")


def command(aligned: Annotated[Path, typer.Option(help="align's output folder of the training set")],
            detections: Annotated[Path, typer.Option(help="detect's output folder of the training set")],
            out: Annotated[Path, typer.Option(help="folder for embeddings.parquet and teacher.json")],
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """The embeddings of the training faces by train.teacher (empty without one), for distillation."""
    settings = load(params)
    table = teacher_embeddings(settings, aligned, detections)
    write_table(out / EMBEDDINGS, table.reset_index())
    info = {"teacher": settings.train.teacher, "faces": len(table), "embedding_size": table.shape[1]}
    write_json(out / INFO, info)
    print_record(info)
