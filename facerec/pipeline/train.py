"""Stage train: a backbone with a margin head on the aligned training set.

Several processes: ``torchrun --nproc_per_node N stages/train.py ...`` (docs/training.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from facerec.config import TrainParams
from facerec.data.training_faces import training_manifest
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, print_record, section, write_metrics
from facerec.runtime.io import write_table
from facerec.training.distributed import world
from facerec.training.loop import TrainResult, train_model

# The resumable state lives here, not in a DVC out (DVC deletes outs before rerunning a
# stage): a killed run, rerun, continues where it stopped.
TRAIN_STATE_DIR = Path(".cache/facerec/train")


def train(aligned_dir: Path, checkpoint: Path, history_path: Path, params: TrainParams) -> TrainResult:
    """Train on an aligned set (align's folder or insightface's train.rec); write the
    checkpoint, the per-step history and, beside it, validation.csv (one row per validation
    on held-out identities; empty without them). Under torchrun every process trains and
    rank 0 alone writes files."""
    state = TRAIN_STATE_DIR / f"{params.model_name}.pt"
    result = train_model(aligned_dir, training_manifest(aligned_dir), params, checkpoint, state)
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
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Train a backbone with a margin head on aligned faces (the train section; torchrun for several processes)."""
    result = train(aligned, checkpoint, history, section(params, "train", TrainParams))
    if world()[0] == 0:
        write_metrics(metrics, result.summary)
        write_metrics(timings, result.timings)
        print_record(result.summary)
