"""The ``facerec`` command; its subcommands mirror the DVC stages.

Each subcommand reads its section of a params file (``--params``, default ``params.yaml``
when present, else the built-in defaults) and writes the same files as the stage does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError

from facerec import steps
from facerec.config import (AlignParams, BenchmarkParams, ConfigError, DetectParams,
                            EvaluateParams, GateParams, LeaderboardParams, TrainParams, load_params)
from facerec.console import setup_logging

app = typer.Typer(help="Reproducible face recognition: detect, align, train, evaluate, benchmark, rank.",
                  no_args_is_help=True, add_completion=False)

ParamsOption = Annotated[Optional[Path], typer.Option(help="params.yaml to read the section from")]


def _section(params_file: Path | None, name: str, defaults: type):
    """The validated ``name`` section of the params file; the section's defaults when no
    ``--params`` is given and there is no params.yaml here."""
    path = params_file or Path("params.yaml")
    if not path.exists() and params_file is None:
        try:
            return defaults()
        except ValidationError:
            raise typer.BadParameter(f"the {name} section has required keys: pass --params") from None
    try:
        return getattr(load_params(path), name)
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None


def _print(record) -> None:
    typer.echo(json.dumps(record, indent=2, default=str))


@app.callback()
def _main() -> None:
    setup_logging()


@app.command()
def detect(images: Annotated[Path, typer.Option(
               help="folder of identity sub-folders of photos, or a .csv/.parquet list with columns path, identity")],
           out: Annotated[Path, typer.Option(help="writes OUT/manifest.parquet and OUT/rejects.parquet")],
           params: ParamsOption = None) -> None:
    """Detect every face and its 5 landmarks in every photo of IMAGES; mark each photo's subject."""
    from facerec.data.sources import PhotoSourceError

    try:
        _print(steps.detect(images, out, _section(params, "detect", DetectParams)))
    except PhotoSourceError as error:
        raise typer.BadParameter(str(error), param_hint="--images") from None


@app.command()
def align(images: Annotated[Path, typer.Option(help="the folder given to detect")],
          detections: Annotated[Path, typer.Option(help="detect's output folder")],
          out: Annotated[Path, typer.Option(help="folder for the 112x112 crops and manifest")],
          params: ParamsOption = None) -> None:
    """Warp every detected face onto the ArcFace 112x112 template."""
    _print(steps.align(images, detections, out, _section(params, "align", AlignParams),
                       _section(params, "detect", DetectParams)))


@app.command()
def gate(name: Annotated[str, typer.Option(help="the set's name, used in the output file names")],
         images: Annotated[Path, typer.Option(help="the photo set given to detect")],
         detections: Annotated[Path, typer.Option(help="detect's output folder")],
         aligned: Annotated[Path, typer.Option(help="align's output folder")],
         out: Annotated[Path, typer.Option(help="folder for the verdict, GE results and contact sheets")] = Path("metrics/gate"),
         training_set: Annotated[bool, typer.Option(help="also require gate.min_images_per_identity")] = False,
         params: ParamsOption = None) -> None:
    """Great Expectations checks of detections and aligned crops; exits 1 when one fails."""
    from facerec.gate import GateFailed

    try:
        _print(steps.gate(name, images, detections, aligned, out, _section(params, "gate", GateParams), training_set))
    except GateFailed as failure:
        typer.echo(str(failure), err=True)
        raise typer.Exit(1) from None


@app.command()
def train(aligned: Annotated[Path, typer.Option(help="align's output folder")],
          checkpoint: Annotated[Path, typer.Option(help="where to write model.pt")],
          history: Annotated[Path, typer.Option(help="per-step CSV log")] = Path("history.csv"),
          params: ParamsOption = None) -> None:
    """Train a backbone with an ArcFace head on aligned faces (needs params.yaml's train section)."""
    _print(steps.train(aligned, checkpoint, history, _section(params, "train", TrainParams)))


@app.command()
def evaluate(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
             aligned: Annotated[Path, typer.Option(help="aligned LFW folder")],
             pairs: Annotated[Path, typer.Option(help="LFW pairs.txt")],
             arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
             roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
             params: ParamsOption = None) -> None:
    """LFW View 2 10-fold accuracy, ROC-AUC, EER, TAR@FAR and Rank-1/5 of one model."""
    _print(steps.evaluate(checkpoint, arch, aligned, pairs, roc, _section(params, "evaluate", EvaluateParams)))


@app.command()
def benchmark(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
              arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
              params: ParamsOption = None) -> None:
    """Latency, throughput, size, GFLOPs and Mparams of one model on this CPU."""
    _print(steps.benchmark(checkpoint, arch, _section(params, "benchmark", BenchmarkParams)))


@app.command()
def leaderboard(evaluations: Annotated[Path, typer.Option()] = Path("metrics/evaluate"),
                benchmarks: Annotated[Path, typer.Option()] = Path("metrics/benchmark"),
                out: Annotated[Path, typer.Option()] = Path("metrics"),
                params: ParamsOption = None) -> None:
    """Join the per-model metrics files into leaderboard.json, .md and .png."""
    steps.leaderboard(evaluations, benchmarks, out, _section(params, "leaderboard", LeaderboardParams).sort_by)
    typer.echo((out / "leaderboard.md").read_text())
