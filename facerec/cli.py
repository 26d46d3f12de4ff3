"""The ``facerec`` command: every pipeline stage's command, plus the zoo and export tools.

The stage commands are the ones ``stages/<stage>.py`` runs for DVC (``facerec.pipeline``):
each reads its section of a params file (``--params``, default ``params.yaml``; the
section's defaults outside a project) and writes the same files as the stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facerec.pipeline import (
    align,
    benchmark,
    benchmark_zoo,
    detect,
    detect_report,
    evalset,
    evaluate,
    gate,
    leaderboard,
    monitor,
    teacher,
    train,
    tune,
)
from facerec.pipeline.common import print_record
from facerec.runtime.console import setup_logging

app = typer.Typer(help="Reproducible face recognition: detect, align, train, evaluate, benchmark, rank.",
                  no_args_is_help=True, add_completion=False)

zoo_app = typer.Typer(help="The model zoo: registered architectures and checkpoint files.",
                      no_args_is_help=True, add_completion=False)
app.add_typer(zoo_app, name="zoo")

for _name, _module in [("detect", detect), ("align", align), ("gate", gate), ("detect-report", detect_report),
                       ("teacher", teacher), ("train", train), ("tune", tune), ("evalset", evalset),
                       ("evaluate", evaluate), ("benchmark", benchmark),
                       ("leaderboard", leaderboard), ("monitor", monitor)]:
    app.command(_name)(_module.command)
app.command("evaluate-folder")(evaluate.folder_command)
zoo_app.command("evaluate")(evaluate.zoo_command)
zoo_app.command("benchmark")(benchmark_zoo.command)


@app.callback()
def _main() -> None:
    setup_logging()


@app.command()
def export(out: Annotated[Path, typer.Option(help="the .onnx file to write")],
           checkpoint: Annotated[Optional[Path], typer.Option(help="weights to export (any zoo layout)")] = None,
           arch: Annotated[Optional[str], typer.Option(
               help="architecture: needed for upstream checkpoints; alone, exports random weights")] = None) -> None:
    """Export a model to ONNX (dynamic batch, RGB input) and check it against torch with onnxruntime."""
    from facerec.models.backbones import build_backbone
    from facerec.models.checkpoints import load_checkpoint
    from facerec.models.export import PARITY_TOLERANCE, cpu_session, export_onnx, onnx_max_abs_diff

    if checkpoint is None and arch is None:
        raise typer.BadParameter("give --checkpoint, --arch or both")
    try:
        if checkpoint is None:
            assert arch is not None  # refused above when both are missing
            model = build_backbone(arch).eval()
        else:
            model, contents = load_checkpoint(checkpoint, arch)
            arch = arch or contents.arch
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error)) from None
    export_onnx(model, out)
    difference = onnx_max_abs_diff(model, cpu_session(out))
    print_record({"onnx": str(out), "arch": arch, "size_mb": out.stat().st_size / 2**20,
                  "max_abs_diff_normalised": difference})
    if difference > PARITY_TOLERANCE:
        typer.echo(f"{out}: onnxruntime differs from torch by {difference:.2e} (> {PARITY_TOLERANCE})", err=True)
        raise typer.Exit(1)


@zoo_app.command("list")
def zoo_list(archs: Annotated[Optional[list[str]], typer.Argument(help="architectures to show (default: all)")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="print a JSON list of records")] = False) -> None:
    """Registered architectures with GFLOPs (MACs ×1e-9, one 112x112 image) and Mparams (backbone only)."""
    from facerec.benchmarking.complexity import complexity
    from facerec.models.backbones import list_backbones

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
        print_record(records)


@zoo_app.command("inspect")
def zoo_inspect(path: Annotated[Path, typer.Argument(help="a checkpoint file")]) -> None:
    """The layout of a checkpoint, the architectures it fits and how it differs from the closest."""
    from facerec.models.checkpoints import inspect_checkpoint

    try:
        print_record(inspect_checkpoint(path))
    except (ValueError, FileNotFoundError) as error:
        raise typer.BadParameter(str(error), param_hint="PATH") from None


@app.command("plots-template")
def plots_template(dvc_dir: Annotated[Path, typer.Option(help="the project's .dvc folder")] = Path(".dvc")) -> None:
    """Write the offline page template of ``dvc plots show`` (Vega inline; .dvc/config's plots.html_template)."""
    from facerec.reports.dvc_plots_page import write_offline_template

    print(write_offline_template(dvc_dir))


@app.command("stage-deps")
def stage_deps(check: Annotated[bool, typer.Option(help="exit 1 where dvc.yaml's code deps differ")] = False,
               root: Annotated[Path, typer.Option(help="the project folder holding dvc.yaml")] = Path(".")) -> None:
    """Each stage's code dependencies, computed from its imports, beside what dvc.yaml declares."""
    from facerec.pipeline.code_deps import minimal_deps, stage_code

    differs = False
    for stage in stage_code(root):
        typer.echo(f"{stage.stage} ({stage.script}):")
        for dep in minimal_deps(root, stage.imported):
            typer.echo(f"  - {dep}")
        for label, files in (("missing from dvc.yaml", stage.missing), ("declared but not imported", stage.unused)):
            if files:
                differs = True
                typer.echo(f"  {label}: {', '.join(files)}", err=True)
    if check and differs:
        raise typer.Exit(1)
