"""Stage detect: every face and its 5 landmarks in every photo of one set, the subject marked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facerec.config import ComputeParams, DetectParams
from facerec.data.digests import PHOTOS, photo_digests
from facerec.faces.detection import DetectionResult, detect_photos
from facerec.pipeline.common import (
    DEFAULT_PARAMS,
    MANIFEST,
    REJECTS,
    ParamsOption,
    print_record,
    section,
    set_detect_params,
    write_metrics,
)
from facerec.runtime.io import write_table


def detect(images: Path, out: Path, params: DetectParams, compute: ComputeParams) -> DetectionResult:
    """Detect faces in the photo set ``images`` (a folder or a CSV/parquet list); write
    OUT/manifest.parquet (every face, subjects marked), OUT/rejects.parquet and
    OUT/photos.parquet (every photo's content digest, which later stages check)."""
    result = detect_photos(images, params, compute)
    write_table(out / MANIFEST, result.manifest)
    write_table(out / REJECTS, result.rejects)
    write_table(out / PHOTOS, photo_digests(images, [*result.manifest["path"], *result.rejects["path"]]))
    return result


def command(images: Annotated[Path, typer.Option(
                help="folder of identity sub-folders of photos, or a .csv/.parquet list with columns path, identity")],
            out: Annotated[Path, typer.Option(help="writes OUT/manifest.parquet and OUT/rejects.parquet")],
            metrics: Annotated[Optional[Path], typer.Option(help="JSON of the set's detection figures")] = None,
            timings: Annotated[Optional[Path], typer.Option(help="JSON of the run's speed (varies run to run)")] = None,
            photo_set: Annotated[Optional[str], typer.Option(
                "--set", help="a data.sets name: its own detect options over the detect section")] = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Detect every face and its 5 landmarks in every photo of IMAGES; mark each photo's subject."""
    from facerec.data.sources import PhotoSourceError

    try:
        result = detect(images, out, set_detect_params(params, photo_set), section(params, "compute", ComputeParams))
    except PhotoSourceError as error:
        raise typer.BadParameter(str(error), param_hint="--images") from None
    write_metrics(metrics, result.summary())
    write_metrics(timings, result.timings())
    print_record(result.summary())
