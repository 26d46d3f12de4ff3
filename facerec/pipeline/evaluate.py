"""Stage evaluate: LFW View 2 (View 1 too when given) and the .bin sets for one model; and
``facerec evaluate-folder``, every pair of any aligned identity folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import torch
import typer

from facerec.config import EvaluateParams
from facerec.data.aligned import load_crops, read_aligned_manifest
from facerec.data.lfw import read_pairs
from facerec.evaluation.embedding import embed_crops
from facerec.evaluation.protocols import evaluate_lfw, identity_set_metrics, protocol_faces
from facerec.models.checkpoints import load_pretrained
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record, section, write_metrics
from facerec.runtime.io import write_table

log = logging.getLogger(__name__)

View1 = tuple[pd.DataFrame, pd.DataFrame]


def evaluation_faces(aligned_dir: Path, pairs_file: Path, view1_files: Sequence[Path] = ()
                     ) -> tuple[pd.DataFrame, View1 | None, pd.DataFrame]:
    """LFW's View 2 pairs, View 1's (pairsDevTrain, pairsDevTest) when given, and the aligned
    faces they name (every model is scored on these faces)."""
    pairs = read_pairs(pairs_file)
    view1 = (read_pairs(view1_files[0]), read_pairs(view1_files[1])) if view1_files else None
    return pairs, view1, protocol_faces(read_aligned_manifest(aligned_dir), pairs, *(view1 or ()))


def score_lfw(aligned: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame, view1: View1 | None,
              roc_path: Path) -> dict:
    """LFW metrics of embeddings of ``aligned``'s faces; the ROC curve written to ``roc_path``."""
    metrics, roc = evaluate_lfw(aligned, embeddings, pairs, view1)
    write_table(roc_path, roc)
    return metrics


def evaluate(checkpoint: Path, arch: str | None, aligned_dir: Path, pairs_file: Path,
             roc_path: Path, params: EvaluateParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of one model (ours, or an upstream checkpoint with ``arch``) and of the
    verification sets in ``params``; writes its ROC curve to ``roc_path``."""
    torch.set_num_threads(params.num_threads)
    model = load_pretrained(arch, checkpoint)
    pairs, view1, aligned = evaluation_faces(aligned_dir, pairs_file, view1_files)
    embeddings = embed_crops(model, load_crops(aligned_dir, aligned["path"].tolist()),
                             params.batch_size, params.flip, params.precision)
    metrics = score_lfw(aligned, embeddings, pairs, view1, roc_path)
    for path in params.verification_sets:
        metrics.update(evaluate_verification_set(model, path, params))
    return metrics


def evaluate_verification_set(model: torch.nn.Module, path: Path, params: EvaluateParams) -> dict:
    """``<stem>_accuracy`` etc. of a model on an insightface .bin set (lfw.bin, cfp_fp.bin, …)."""
    from facerec.data.verification_bin import decode_faces, read_verification_bin
    from facerec.evaluation.protocols import verification_set_metrics

    images, issame = read_verification_bin(path)
    log.info("%s: %d pairs", path, len(issame))
    embeddings = embed_crops(model, decode_faces(path, images), params.batch_size, params.flip, params.precision)
    return verification_set_metrics(Path(path).stem, embeddings, issame)


def evaluate_folder(checkpoint: Path, arch: str | None, aligned_dir: Path, roc_path: Path,
                    params: EvaluateParams) -> dict:
    """Verification over every pair and Rank-1/5 of one model on any aligned identity folder
    (the align stage's output for your own photos); writes the ROC to ``roc_path``."""
    torch.set_num_threads(params.num_threads)
    model = load_pretrained(arch, checkpoint)
    faces = read_aligned_manifest(aligned_dir).sort_values("source").reset_index(drop=True)
    embeddings = embed_crops(model, load_crops(aligned_dir, faces["path"].tolist()),
                             params.batch_size, params.flip, params.precision)
    metrics, roc = identity_set_metrics(faces, embeddings)
    write_table(roc_path, roc)
    return metrics


ArchOption = Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")]


def command(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
            aligned: Annotated[Path, typer.Option(help="align's output folder of the LFW images")],
            roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
            metrics: Annotated[Optional[Path], typer.Option(help="JSON of the figures")] = None,
            arch: ArchOption = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """LFW View 2 10-fold accuracy (and View 1), ROC-AUC, EER, TAR@FAR and Rank-1/5 of one model.

    The pairs files are the params file's data.lfw_pairs and data.lfw_view1_pairs."""
    settings = load(params)
    result = evaluate(checkpoint, arch, aligned, settings.data.lfw_pairs, roc, settings.evaluate,
                      settings.data.lfw_view1_pairs)
    write_metrics(metrics, result)
    print_record(result)


def folder_command(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
                   aligned: Annotated[Path, typer.Option(help="an aligned identity folder (align's output)")],
                   arch: ArchOption = None,
                   roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
                   params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Every genuine and impostor pair of an aligned identity folder: ROC-AUC, EER, TAR@FAR, Rank-1/5."""
    print_record(evaluate_folder(checkpoint, arch, aligned, roc, section(params, "evaluate", EvaluateParams)))
