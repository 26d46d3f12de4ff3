"""Stages evaluate and evaluate_zoo: one model on one evaluation set (the evalset stage's
folder); ``facerec zoo evaluate``, every zoo entry on one set; and ``facerec evaluate-folder``,
any model on any aligned identity folder.

Checkpoints (ours and upstream) embed the set's aligned crops with flip; peers cut their own
crops from the photos at our detections (no flip: as their authors evaluate them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import torch
import typer

from facerec.config import ComputeParams, DetectParams, EvaluateParams, IdentitiesSet
from facerec.evaluation.metrics import roc_curve
from facerec.evaluation.protocols import (
    evaluate_lfw,
    identity_set_metrics,
    pairs_accuracy,
    roc_for_plot,
    verification_set_metrics,
)
from facerec.evaluation.sets import EvaluationFaces, build_evaluation_set, read_evaluation_info, read_evaluation_set
from facerec.models.zoo import ModelRef, missing_checkpoint, resolve_model
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record, section
from facerec.runtime.io import write_json, write_table

log = logging.getLogger(__name__)

ROC_COLUMNS = ["fpr", "tpr"]


def embed_evaluation_set(model: ModelRef, evaluation: EvaluationFaces, params: EvaluateParams,
                         compute: ComputeParams) -> np.ndarray:
    """L2-normalised embeddings of the set's faces, row i for face i. Peers run on the
    ``compute`` engine's workers; checkpoints in this process."""
    from facerec.evaluation.embedding import embed_crops

    torch.set_num_threads(params.num_threads)
    if model.is_peer:
        from facerec.models.peers.photos import embed_evaluation_faces

        assert model.arch is not None  # a peer is named by its arch
        return embed_evaluation_faces(model.arch, evaluation, compute, params.num_threads)
    from facerec.models.checkpoints import load_pretrained

    assert model.path is not None  # checkpoints have a path (ZooEntry, resolve_model)
    network = load_pretrained(model.arch, model.path)
    return embed_crops(network, evaluation.crops(), params.batch_size, params.flip, params.precision, params.runtime,
                       params.num_threads)


def score_evaluation_set(evaluation: EvaluationFaces, embeddings: np.ndarray) -> tuple[dict, pd.DataFrame]:
    """The set's protocol on the embeddings: (figures, ROC for plotting)."""
    if evaluation.kind == "lfw":
        view1 = ((evaluation.protocol("view1_train"), evaluation.protocol("view1_test"))
                 if (evaluation.pairs["protocol"] == "view1_train").any() else None)
        return evaluate_lfw(evaluation.faces, embeddings, evaluation.protocol("view2"), view1)
    if evaluation.kind == "identities":
        figures, roc = identity_set_metrics(evaluation.faces, embeddings)
        if len(evaluation.pairs):
            by_source = dict(zip(evaluation.faces["source"], embeddings))
            figures.update(pairs_accuracy(evaluation.protocol("pairs"), by_source))
        return figures, roc
    issame = evaluation.protocol("bin")["genuine"].to_numpy(bool)
    figures = verification_set_metrics("bin", embeddings, issame)
    # The set is the record's name: only its own accuracy keeps the prefix, the ROC figures
    # share the leaderboard's columns with the other kinds.
    figures = {key if key.startswith(("bin_accuracy", "bin_pairs")) else key.removeprefix("bin_"): value
               for key, value in figures.items()}
    fpr, tpr, _ = roc_curve(np.einsum("ij,ij->i", embeddings[0::2], embeddings[1::2]), issame)
    return figures, roc_for_plot(fpr, tpr)


def evaluate(model: ModelRef, evaluation: EvaluationFaces, params: EvaluateParams,
             compute: ComputeParams) -> tuple[dict, pd.DataFrame]:
    """One model's figures on one evaluation set, with ``kind``, and its ROC curve."""
    log.info("%s on %s (%s, %d faces)", model.name, evaluation.info["name"], evaluation.kind, len(evaluation.faces))
    figures, roc = score_evaluation_set(evaluation, embed_evaluation_set(model, evaluation, params, compute))
    return {"kind": evaluation.kind, **figures}, roc


def evaluate_to_files(model: ModelRef, evaluation_set: Path, params: EvaluateParams, compute: ComputeParams,
                      metrics_path: Path, roc_path: Path) -> dict:
    """Write the model's figures on the set in folder ``evaluation_set`` and its ROC; a zoo
    model that cannot run here writes ``{"kind", "skipped": reason}`` and an empty ROC, which
    the leaderboard lists as skipped (the set's faces are not even read then)."""
    from facerec.models.peers import PeerUnavailable

    reason = missing_checkpoint(model)
    if reason is None:
        try:
            record, roc = evaluate(model, read_evaluation_set(evaluation_set), params, compute)
        except PeerUnavailable as error:
            reason = str(error)
    if reason is not None:
        log.warning("%s skipped: %s", model.name, reason)
        record = {"kind": read_evaluation_info(evaluation_set)["kind"], "skipped": reason}
        roc = pd.DataFrame(columns=ROC_COLUMNS)
    write_json(metrics_path, record)
    write_table(roc_path, roc)
    return record


def command(model: Annotated[str, typer.Option(help="train.model_name, a zoo entry or a peer")],
            evaluation_set: Annotated[Path, typer.Option("--set", help="the evalset stage's folder of one set")],
            metrics: Annotated[Path, typer.Option(help="JSON of the figures")],
            roc: Annotated[Path, typer.Option(help="CSV of the ROC curve")],
            checkpoint: Annotated[Optional[Path], typer.Option(
                help="our model's checkpoint (default models/<model>/model.pt)")] = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """One model on one evaluation set: the set's protocol (LFW 10-fold, every pair, Rank-1/5, open-set)."""
    settings = load(params)
    try:
        reference = resolve_model(model, settings, checkpoint)
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--model") from None
    print_record(evaluate_to_files(reference, evaluation_set, settings.evaluate, settings.compute, metrics, roc))


def zoo_command(evaluation_set: Annotated[Path, typer.Option("--set", help="the evalset stage's folder of one set")],
                out: Annotated[Path, typer.Option(help="folder for <name>.json and <name>.csv (the ROC)")],
                params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Every entry of the params file's zoo on one evaluation set (those that cannot run say why)."""
    settings = load(params)
    records = {name: evaluate_to_files(resolve_model(name, settings), evaluation_set, settings.evaluate,
                                       settings.compute, out / f"{name}.json", out / f"{name}.csv")
               for name in settings.zoo}
    print_record(records)


def folder_command(aligned: Annotated[Path, typer.Option(help="an aligned identity folder (align's output)")],
                   detections: Annotated[Path, typer.Option(help="detect's output folder of the same photos")],
                   images: Annotated[Path, typer.Option(help="the photos given to detect")],
                   model: Annotated[Optional[str], typer.Option(
                       help="train.model_name, a zoo entry or a peer (default: train.model_name)")] = None,
                   checkpoint: Annotated[Optional[Path], typer.Option(
                       help="a checkpoint file instead of a named model")] = None,
                   arch: Annotated[Optional[str], typer.Option(help="architecture of an upstream --checkpoint")] = None,
                   roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
                   params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Any model on any aligned identity folder: every genuine and impostor pair, Rank-1/5, open-set FNIR@FPIR."""
    if checkpoint is not None:
        reference = ModelRef(checkpoint.stem, arch, checkpoint)
    else:
        settings = load(params)
        try:
            reference = resolve_model(model or settings.train.model_name, settings)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--model") from None
    evaluation = build_evaluation_set(aligned.name, IdentitiesSet(kind="identities", photos=aligned.name),
                                      images, detections, aligned, section(params, "detect", DetectParams))
    record, curve = evaluate(reference, evaluation, section(params, "evaluate", EvaluateParams),
                             section(params, "compute", ComputeParams))
    write_table(roc, curve)
    print_record(record)
