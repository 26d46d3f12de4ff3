"""What every stage command shares: the params file, the file names between stages, metrics files.

A stage is one module of ``facerec.pipeline`` holding its library call and its typer
``command``; the ``facerec`` CLI registers that command and ``stages/<stage>.py`` runs it
alone (``run_stage``), so a DVC run and a command-line run are the same code path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from facerec.config import ConfigError, DetectParams, Params, load_params
from facerec.runtime.console import setup_logging
from facerec.runtime.io import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
REJECTS = "rejects.parquet"

ParamsOption = Annotated[Path, typer.Option("--params", help="the params file to read (params.yaml)")]
DEFAULT_PARAMS = Path("params.yaml")

SectionT = TypeVar("SectionT", bound=BaseModel)


def load(params_file: Path) -> Params:
    """The validated params file; an invalid one is a usage error naming the keys."""
    try:
        return load_params(params_file)
    except ConfigError as error:
        raise typer.BadParameter(str(error), param_hint="--params") from None


def section(params_file: Path, name: str, model: type[SectionT]) -> SectionT:
    """The ``name`` section of the params file; the section's defaults when the default
    params.yaml is absent (the CLI used outside a project)."""
    if params_file == DEFAULT_PARAMS and not params_file.exists():
        try:
            return model()
        except ValidationError:
            raise typer.BadParameter(f"the {name} section has required keys: pass --params") from None
    value: SectionT = getattr(load(params_file), name)
    return value


def set_detect_params(params_file: Path, photo_set: str | None) -> DetectParams:
    """The detect options of a photo set of the params file (its own over the detect
    section's), or the detect section's alone when no set is named."""
    if photo_set is None:
        return section(params_file, "detect", DetectParams)
    settings = load(params_file)
    if photo_set not in settings.data.sets:
        raise typer.BadParameter(f"{photo_set!r} is not one of data.sets: {', '.join(settings.data.sets)}",
                                 param_hint="--set")
    return settings.detect_params(photo_set)


def write_metrics(path: Path | None, metrics: dict[str, Any]) -> None:
    """Write a stage's figures (when a path is given) and log their start."""
    if path is None:
        return
    write_json(path, metrics)
    log.info("wrote %s: %s", path, json.dumps(metrics, default=str)[:500])


def print_record(record: object) -> None:
    """A command's result as JSON on stdout (logs go to stderr, so it pipes cleanly)."""
    typer.echo(json.dumps(record, indent=2, default=str))


def run_stage(command: Callable[..., None]) -> None:
    """Run one stage's command as its own program (``stages/<stage>.py``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(command)
    setup_logging()
    app()
