"""Stage evalset: one evaluation set of params.yaml's ``evaluate.sets`` as a folder that every
model's evaluation reads (``facerec.evaluation.sets``): its faces' crops, detections and
photo digests, and its protocol's pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facerec.config import BinSet
from facerec.evaluation.sets import build_evaluation_set, write_evaluation_set
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, load, print_record


def command(name: Annotated[str, typer.Option(help="the set's name in the params file's evaluate.sets")],
            out: Annotated[Path, typer.Option(help="the set's folder (faces.parquet, pairs.parquet, set.json)")],
            data: Annotated[Path, typer.Option(
                help="folder holding detections/<photo set> and aligned/<photo set>")] = Path("data"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Gather one evaluation set's faces (crops, detections, photo digests) and pairs into one folder."""
    settings = load(params)
    if name not in settings.evaluate.sets:
        raise typer.BadParameter(f"{name!r} is not one of evaluate.sets: {', '.join(settings.evaluate.sets)}",
                                 param_hint="--name")
    spec = settings.evaluate.sets[name]
    if isinstance(spec, BinSet):
        evaluation = build_evaluation_set(name, spec, None, None, None)
    else:
        evaluation = build_evaluation_set(name, spec, settings.data.sets[spec.photos].images,
                                          data / "detections" / spec.photos, data / "aligned" / spec.photos,
                                          settings.detect_params(spec.photos), settings.data.holdout_identities)
    write_evaluation_set(out, evaluation)
    print_record(evaluation.info)
