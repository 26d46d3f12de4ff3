"""The ``facerec`` command; its pipeline subcommands mirror the DVC stages.

Each of those reads its section of a params file (``--params``, default ``params.yaml``
when present, else the built-in defaults) and writes the same files as the stage does.
``zoo list``, ``zoo inspect`` and ``export`` work on architectures and checkpoint files.
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

zoo_app = typer.Typer(help="The model zoo: registered architectures and checkpoint files.",
                      no_args_is_help=True, add_completion=False)
app.add_typer(zoo_app, name="zoo")

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
    return getattr(_params_file(path), name)


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
def train(aligned: Annotated[Path, typer.Option(help="align's output folder, or an insightface train.rec")],
          checkpoint: Annotated[Path, typer.Option(help="where to write model.pt")],
          history: Annotated[Path, typer.Option(help="per-step CSV log")] = Path("history.csv"),
          params: ParamsOption = None) -> None:
    """Train a backbone with a margin head on aligned faces (params.yaml's train section; torchrun for several processes)."""
    _print(steps.train(aligned, checkpoint, history, _section(params, "train", TrainParams)))


@app.command()
def evaluate(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
             aligned: Annotated[Path, typer.Option(help="aligned LFW folder")],
             pairs: Annotated[Path, typer.Option(help="LFW pairs.txt")],
             arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
             roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
             view1: Annotated[Optional[list[Path]], typer.Option(
                 help="LFW View 1: pairsDevTrain.txt then pairsDevTest.txt (give the option twice)")] = None,
             params: ParamsOption = None) -> None:
    """LFW View 2 10-fold accuracy (View 1 with --view1), ROC-AUC, EER, TAR@FAR and Rank-1/5 of one model."""
    if view1 and len(view1) != 2:
        raise typer.BadParameter("give --view1 twice: pairsDevTrain.txt, then pairsDevTest.txt", param_hint="--view1")
    _print(steps.evaluate(checkpoint, arch, aligned, pairs, roc, _section(params, "evaluate", EvaluateParams),
                          view1 or ()))


@app.command("evaluate-folder")
def evaluate_folder(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
                    aligned: Annotated[Path, typer.Option(help="an aligned identity folder (the align stage's output)")],
                    arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
                    roc: Annotated[Path, typer.Option(help="CSV for the ROC curve")] = Path("roc.csv"),
                    params: ParamsOption = None) -> None:
    """Every genuine and impostor pair of an aligned identity folder: ROC-AUC, EER, TAR@FAR, Rank-1/5."""
    _print(steps.evaluate_folder(checkpoint, arch, aligned, roc, _section(params, "evaluate", EvaluateParams)))


@app.command()
def benchmark(checkpoint: Annotated[Path, typer.Option(help="model checkpoint")],
              arch: Annotated[Optional[str], typer.Option(help="architecture of a non-facerec checkpoint")] = None,
              params: ParamsOption = None) -> None:
    """Latency, throughput, size, GFLOPs and Mparams of one model on this CPU."""
    _print(steps.benchmark(checkpoint, arch, _section(params, "benchmark", BenchmarkParams)))


@app.command()
def leaderboard(evaluations: Annotated[list[Path], typer.Option(help="folders of evaluate metrics files")] = [
                    Path("metrics/evaluate"), Path("metrics/zoo/evaluate")],
                benchmarks: Annotated[list[Path], typer.Option(help="folders of benchmark metrics files")] = [
                    Path("metrics/benchmark"), Path("metrics/zoo/benchmark")],
                zoo_reports: Annotated[list[Path], typer.Option(help="the zoo stages' reports (skipped entries)")] = [
                    Path("metrics/zoo/evaluate_report.json"), Path("metrics/zoo/benchmark_report.json")],
                out: Annotated[Path, typer.Option()] = Path("metrics"),
                params: ParamsOption = None) -> None:
    """Join the per-model metrics files of ours and the zoo into leaderboard.json, .md and .png."""
    steps.leaderboard(evaluations, benchmarks, zoo_reports, out,
                      _section(params, "leaderboard", LeaderboardParams).sort_by)
    typer.echo((out / "leaderboard.md").read_text())


@app.command()
def export(out: Annotated[Path, typer.Option(help="the .onnx file to write")],
           checkpoint: Annotated[Optional[Path], typer.Option(help="weights to export (any zoo layout)")] = None,
           arch: Annotated[Optional[str], typer.Option(
               help="architecture: needed for upstream checkpoints; alone, exports random weights")] = None) -> None:
    """Export a model to ONNX (dynamic batch, RGB input) and check it against torch with onnxruntime."""
    from facerec.backbones import build_backbone
    from facerec.export import PARITY_TOLERANCE, export_onnx, onnx_max_abs_diff
    from facerec.zoo import load_checkpoint

    if checkpoint is None and arch is None:
        raise typer.BadParameter("give --checkpoint, --arch or both")
    try:
        if checkpoint is None:
            model = build_backbone(arch).eval()
        else:
            model, contents = load_checkpoint(checkpoint, arch)
            arch = arch or contents.arch
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from None
    export_onnx(model, out)
    difference = onnx_max_abs_diff(model, out)
    _print({"onnx": str(out), "arch": arch, "size_mb": out.stat().st_size / 2**20,
            "max_abs_diff_normalised": difference})
    if difference > PARITY_TOLERANCE:
        typer.echo(f"{out}: onnxruntime differs from torch by {difference:.2e} (> {PARITY_TOLERANCE})", err=True)
        raise typer.Exit(1)


@zoo_app.command("list")
def zoo_list(archs: Annotated[Optional[list[str]], typer.Argument(help="architectures to show (default: all)")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of records")] = False) -> None:
    """Registered architectures with GFLOPs (MACs ×1e-9, one 112x112 image) and Mparams (backbone only)."""
    from facerec.backbones import list_backbones
    from facerec.complexity import complexity

    unknown = sorted(set(archs or []) - set(list_backbones()))
    if unknown:
        raise typer.BadParameter(f"unknown {', '.join(unknown)}; known: {', '.join(list_backbones())}")
    if not as_json:
        typer.echo(f"{'arch':<16} {'GFLOPs':>8} {'Mparams':>9}")
    records = []
    for name in archs or list_backbones():
        cost = complexity(name)
        records.append({"arch": name, "gflops": cost.gflops, "mparams": cost.mparams})
        if not as_json:  # row by row: counting the whole zoo takes a while
            typer.echo(f"{name:<16} {cost.gflops:>8.3f} {cost.mparams:>9.3f}")
    if as_json:
        _print(records)


@zoo_app.command("inspect")
def zoo_inspect(path: Annotated[Path, typer.Argument(help="a checkpoint file")]) -> None:
    """The layout of a checkpoint, the architectures it fits and how it differs from the closest."""
    from facerec.zoo import inspect_checkpoint

    try:
        _print(inspect_checkpoint(path))
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="PATH") from None


def _params_file(params: Path | None):
    """The validated params file (``params.yaml`` here by default); errors become usage errors."""
    try:
        return load_params(params or Path("params.yaml"))
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--params") from None


@zoo_app.command("evaluate")
def zoo_evaluate(detections: Annotated[Path, typer.Option(help="detect's output folder for the LFW images")],
                 aligned: Annotated[Path, typer.Option(help="align's output folder for them")],
                 out: Annotated[Path, typer.Option(help="folder for <name>.json")] = Path("metrics/zoo/evaluate"),
                 roc: Annotated[Path, typer.Option(help="folder for <name>.csv")] = Path("metrics/zoo/roc"),
                 report: Annotated[Path, typer.Option()] = Path("metrics/zoo/evaluate_report.json"),
                 params: ParamsOption = None) -> None:
    """LFW metrics of every entry of the params file's zoo that can run here (the evaluate_zoo stage)."""
    settings = _params_file(params)
    _print(steps.evaluate_zoo(settings.zoo, settings.data.sets[settings.data.eval_set], detections, aligned,
                              settings.data.lfw_pairs, out, roc, report, settings.evaluate, settings.detect,
                              settings.data.lfw_view1_pairs))


@zoo_app.command("benchmark")
def zoo_benchmark(out: Annotated[Path, typer.Option(help="folder for <name>.json")] = Path("metrics/zoo/benchmark"),
                  report: Annotated[Path, typer.Option()] = Path("metrics/zoo/benchmark_report.json"),
                  params: ParamsOption = None) -> None:
    """Benchmark figures of every entry of the params file's zoo that can run here (the benchmark_zoo stage)."""
    settings = _params_file(params)
    _print(steps.benchmark_zoo(settings.zoo, out, report, settings.benchmark))
