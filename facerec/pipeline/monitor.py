"""Stage monitor: Evidently's drift report of a set of photos against the training set, per face.

Drift is a result, not an error (the face-monitor flow acts on it per monitor.on_drift);
the stage fails only on missing or inconsistent input, naming the file.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import torch
import typer

from facerec.config import MonitorParams
from facerec.models.checkpoints import load_pretrained
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, print_record, section
from facerec.quality.drift import MonitorInputError, monitor_sets
from facerec.runtime.io import atomic_path, write_json

log = logging.getLogger(__name__)


def monitor(reference: tuple[Path, Path], current: tuple[Path, Path], checkpoint: Path, html_path: Path,
            json_path: Path, params: MonitorParams) -> dict:
    """Drift of the current set's faces against the reference set's, each given as its
    (detections, aligned) folders, with our model's embeddings: Evidently's report to
    ``html_path`` and the verdict per feature to ``json_path``."""
    torch.set_num_threads(params.num_threads)
    report, summary = monitor_sets(reference, current, load_pretrained(None, checkpoint), params)
    with atomic_path(html_path) as tmp:
        report.save_html(str(tmp))  # Evidently writes to a str path only (a Path is silently ignored)
    write_json(json_path, summary)
    return summary


def command(reference_detections: Annotated[Path, typer.Option(help="detect's folder of the training set")],
            reference_aligned: Annotated[Path, typer.Option(help="align's folder of the training set")],
            current_detections: Annotated[Path, typer.Option(help="detect's folder of the monitored set")],
            current_aligned: Annotated[Path, typer.Option(help="align's folder of the monitored set")],
            checkpoint: Annotated[Path, typer.Option(help="our model (embedding features)")],
            html: Annotated[Path, typer.Option(help="Evidently's report page")],
            json: Annotated[Path, typer.Option(help="the verdict per feature")],
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Drift of the monitored set's faces against the training set's (Evidently)."""
    try:
        summary = monitor((reference_detections, reference_aligned), (current_detections, current_aligned),
                          checkpoint, html, json, section(params, "monitor", MonitorParams))
    except (MonitorInputError, FileNotFoundError) as error:
        typer.echo(f"monitor: {error}", err=True)
        raise typer.Exit(1) from None
    log.info("%s: %d of %d features drifted; report %s, verdict %s", "DRIFT" if summary["dataset_drift"] else
             "no drift", summary["drifted_features"], summary["features"], html, json)
    print_record(summary)
