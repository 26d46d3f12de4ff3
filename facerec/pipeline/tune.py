"""Stage tune: Optuna's search of the margin head on short trainings, scored on held-out people.

The study is kept in ``tune.storage`` or, by default, SQLite in the storage folder (not a
DVC out, which DVC would delete before a rerun): a rerun resumes the study.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from facerec.config import TrainParams, TuneParams
from facerec.data.people import without_heldout
from facerec.data.training_faces import training_manifest
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record, write_metrics
from facerec.pipeline.teacher import read_teacher
from facerec.reports.live import LiveMetrics
from facerec.reports.tuning_report import write_tuning_report
from facerec.runtime.io import write_table
from facerec.training.transfer import initial_weights
from facerec.training.tuning import run_study, summary, trial_seconds, trials_table


def tune(aligned_dir: Path, storage_dir: Path, trials_path: Path, report_path: Path, train: TrainParams,
         params: TuneParams, holdout_identities: int = 0, initial_weights: dict | None = None,
         teacher: pd.DataFrame | None = None, live_dir: Path | None = None) -> tuple[dict, dict]:
    """Search the head's hyperparameters on the aligned training set (less the people held
    out for evaluation), each trial trained as the train stage trains (from ``initial_weights``,
    with ``teacher``); write every trial's values and score and Optuna's plots, and each trial
    as it ends into the DVCLive folder ``live_dir``; return the best values and each trial's
    seconds."""
    storage_dir.mkdir(parents=True, exist_ok=True)
    url = params.storage or f"sqlite:///{storage_dir / 'study.db'}"
    faces = without_heldout(training_manifest(aligned_dir), holdout_identities)
    with ExitStack() as stack:
        live = stack.enter_context(LiveMetrics(live_dir)) if live_dir is not None else None
        study, space = run_study(aligned_dir, faces, train, params, url, initial_weights, teacher,
                                 on_trial=live.log if live is not None else None)
    write_table(trials_path, trials_table(study).round(6))
    write_tuning_report(report_path, study)
    return summary(study, space, train.validation_metric, url), {"trial_seconds": trial_seconds(study)}


def command(aligned: Annotated[Path, typer.Option(help="align's output folder of the training set")],
            storage_dir: Annotated[Path, typer.Option(help="folder of the SQLite study (default storage)")],
            trials: Annotated[Path, typer.Option(help="CSV of every trial")],
            report: Annotated[Path, typer.Option(help="HTML page of Optuna's plots")],
            metrics: Annotated[Path, typer.Option(help="JSON of the best values")],
            timings: Annotated[Optional[Path], typer.Option(help="JSON of each trial's seconds")] = None,
            live: Annotated[Optional[Path], typer.Option(
                help="DVCLive folder: each trial's score, pruning and values as the study goes")] = None,
            teacher: Annotated[Path, typer.Option(
                help="the teacher stage's folder (read when train.teacher is set)")] = Path("data/teacher"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Search the margin head's parameters with Optuna (TPE, median pruner) on short trainings."""
    settings = load(params)
    result, seconds = tune(aligned, storage_dir, trials, report, settings.train, settings.tune,
                           settings.data.holdout_identities, initial_weights(settings),
                           read_teacher(teacher, settings.train.teacher), live)
    write_metrics(metrics, result)
    write_metrics(timings, seconds)
    print_record(result)
