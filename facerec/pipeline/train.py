"""Stage train: a backbone with a margin head on the aligned training set.

Several processes: ``torchrun --nproc_per_node N stages/train.py ...`` (docs/training.md).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from facerec.config import TrainParams
from facerec.data.people import without_heldout
from facerec.data.training_faces import training_manifest
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record, section, write_metrics
from facerec.pipeline.teacher import read_teacher
from facerec.reports.live import LiveMetrics
from facerec.runtime.io import write_table
from facerec.training.distributed import world
from facerec.training.loop import TrainResult, train_model
from facerec.training.transfer import initial_weights

# The resumable state lives here, not in a DVC out (DVC deletes outs before rerunning a
# stage): a killed run, rerun, continues where it stopped.
TRAIN_STATE_DIR = Path(".cache/facerec/train")


def train(aligned_dir: Path, checkpoint: Path, history_path: Path, params: TrainParams,
          holdout_identities: int = 0, initial_weights: dict | None = None,
          teacher: pd.DataFrame | None = None, live_dir: Path | None = None) -> TrainResult:
    """Train on an aligned set (align's folder or insightface's train.rec), less the
    ``holdout_identities`` people kept for evaluation, from ``initial_weights`` and with the
    ``teacher``'s embeddings when given; write the checkpoint, the per-step history and,
    beside it, validation.csv (one row per validation on held-out identities; empty without
    them), and each epoch's figures as they come into the DVCLive folder ``live_dir``. Under
    torchrun every process trains and rank 0 alone writes files."""
    state = TRAIN_STATE_DIR / f"{params.model_name}.pt"
    faces = without_heldout(training_manifest(aligned_dir), holdout_identities)
    with ExitStack() as stack:
        live = stack.enter_context(LiveMetrics(live_dir)) if live_dir is not None and world()[0] == 0 else None
        result = train_model(aligned_dir, faces, params, checkpoint, state, initial_weights=initial_weights,
                             teacher=teacher, on_epoch=live.log if live is not None else None)
    if world()[0] == 0:
        write_table(history_path, result.history.round(6))
        validation = result.validation if len(result.validation) else pd.DataFrame(
            columns=["step", "epoch", "metric", "score", "best"])
        write_table(history_path.with_name("validation.csv"), validation.round(6))
    return result


def command(aligned: Annotated[Path, typer.Option(help="align's output folder, or an insightface train.rec")],
            checkpoint: Annotated[Path, typer.Option(help="where to write model.pt")],
            history: Annotated[Path, typer.Option(help="per-step CSV log (validation.csv lands beside it)")] = Path(
                "history.csv"),
            metrics: Annotated[Optional[Path], typer.Option(help="JSON of the run's summary")] = None,
            timings: Annotated[Optional[Path], typer.Option(help="JSON of the run's speed (varies run to run)")] = None,
            live: Annotated[Optional[Path], typer.Option(
                help="DVCLive folder: each epoch's loss, accuracy, lr and validation as the run goes")] = None,
            teacher: Annotated[Path, typer.Option(
                help="the teacher stage's folder (read when train.teacher is set)")] = Path("data/teacher"),
            holdout_identities: Annotated[Optional[int], typer.Option(
                help="people kept out for evaluation (default: the params file's data.holdout_identities)")] = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train a backbone with a margin head on aligned faces (the train section; torchrun for several processes)."""
    settings = load(params) if params.exists() else None
    if holdout_identities is None:
        holdout_identities = settings.data.holdout_identities if settings else 0
    train_params = settings.train if settings else section(params, "train", TrainParams)
    result = train(aligned, checkpoint, history, train_params, holdout_identities,
                   initial_weights(settings) if settings else None, read_teacher(teacher, train_params.teacher), live)
    if world()[0] == 0:
        write_metrics(metrics, result.summary)
        write_metrics(timings, result.timings)
        print_record(result.summary)
