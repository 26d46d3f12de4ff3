"""Stage gate: Great Expectations on one set's detections and crops, and its contact sheets.

A failed expectation stops ``dvc repro`` here, before any model trains or is evaluated on
the data, with a summary naming the expectation and example rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from facerec.config import GateParams
from facerec.data.sources import photo_location
from facerec.pipeline.common import DEFAULT_PARAMS, MANIFEST, REJECTS, ParamsOption, load, print_record, section
from facerec.quality.contact_sheet import aligned_sheet, rejects_sheet
from facerec.quality.expectations import GateFailed, validate_aligned, validate_detections
from facerec.runtime.io import read_table, write_json

log = logging.getLogger(__name__)


def gate(name: str, images: Path, detections: Path, aligned_dir: Path, out_dir: Path,
         params: GateParams, training_set: bool) -> dict:
    """Validate one set's detections and aligned crops and draw its contact sheets. Writes
    OUT/<name>.json (the verdict and failures, a stable file later stages depend on),
    OUT/<name>.validation.json (GE's full results) and the sheets OUT/<name>_aligned.png and
    OUT/<name>_rejects.png. Raises GateFailed when it fails."""
    manifest, aligned = read_table(detections / MANIFEST), read_table(aligned_dir / MANIFEST)
    results = [validate_detections(manifest, f"detections:{name}",
                                   params.min_images_per_identity if training_set else None),
               validate_aligned(aligned_dir, aligned, f"aligned:{name}", params.min_pixel_std)]
    verdict = {"success": all(r.success for r in results),
               **{r.name.split(":")[0]: {"success": r.success, "statistics": r.statistics,
                                         "failures": r.failures} for r in results}}
    write_json(out_dir / f"{name}.json", verdict)
    write_json(out_dir / f"{name}.validation.json", {r.name: r.raw for r in results})
    rejects = pd.concat([read_table(detections / REJECTS), read_table(aligned_dir / REJECTS)], ignore_index=True)
    aligned_sheet(aligned_dir, aligned, out_dir / f"{name}_aligned.png")
    rejects_sheet(rejects, lambda path: photo_location(images, path), out_dir / f"{name}_rejects.png")
    for result in results:
        log.info("%s", result.summary())
        if not result.success:
            raise GateFailed(result, _no_faces(name, rejects) if manifest.empty else None)
    return verdict


def _no_faces(name: str, rejects: pd.DataFrame) -> str:
    # Most frequent first, ties by name: the same sentence on every run.
    reasons = rejects["reason"].str.split(":").str[0].value_counts().sort_index().sort_values(
        ascending=False, kind="stable")
    counted = ", ".join(f"{count} {reason}" for reason, count in reasons.items()) or "the set is empty"
    return f"set {name!r} has no face at all: {len(rejects)} photos, every one rejected ({counted})"


def command(name: Annotated[str, typer.Option(help="the set's name, used in the output file names")],
            images: Annotated[Path, typer.Option(help="the photo set given to detect")],
            detections: Annotated[Path, typer.Option(help="detect's output folder")],
            aligned: Annotated[Path, typer.Option(help="align's output folder")],
            out: Annotated[Path, typer.Option(help="folder for the verdict, GE results and contact sheets")],
            training_set: Annotated[bool, typer.Option(
                help="also require gate.min_images_per_identity (implied for the params' data.train_set)")] = False,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Great Expectations checks of detections and aligned crops; exits 1 when one fails."""
    if params.exists():
        training_set = training_set or name == load(params).data.train_set
    try:
        print_record(gate(name, images, detections, aligned, out, section(params, "gate", GateParams), training_set))
    except GateFailed as failure:
        typer.echo(f"data gate of set {name!r} failed; full results in {out / (name + '.validation.json')}\n"
                   f"{failure}", err=True)
        raise typer.Exit(1) from None
