"""Stage align: each subject's 5 landmarks warped onto the ArcFace 112×112 template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from facerec.config import AlignParams, ComputeParams, DetectParams
from facerec.data.aligned import write_crops
from facerec.data.digests import read_photo_digests
from facerec.faces.alignment import align_manifest
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
from facerec.runtime.io import read_table, write_table


def align(images: Path, detections: Path, out: Path, params: AlignParams, detect_params: DetectParams,
          workers: int = 2) -> dict:
    """Write OUT/manifest.parquet, OUT/crops.parquet (the aligned 112×112 crops' JPEG bytes)
    and OUT/rejects.parquet, aligning in ``workers`` threads."""
    manifest = read_table(detections / MANIFEST)
    aligned, rejects = align_manifest(images, manifest, params, detect_params, read_photo_digests(detections),
                                      workers)
    write_crops(out, aligned["path"], aligned.pop("jpeg"))
    write_table(out / MANIFEST, aligned)
    write_table(out / REJECTS, rejects)
    error = aligned["alignment_error"]
    return {"faces": len(aligned), "rejected": len(rejects),
            "identities": int(aligned["identity"].nunique()),
            "alignment_error_mean_px": float(error.mean()) if len(error) else None,
            "alignment_error_p95_px": float(error.quantile(0.95)) if len(error) else None}


def command(images: Annotated[Path, typer.Option(help="the photo set given to detect")],
            detections: Annotated[Path, typer.Option(help="detect's output folder")],
            out: Annotated[Path, typer.Option(help="folder for the 112x112 crops and manifest")],
            metrics: Annotated[Optional[Path], typer.Option(help="JSON of the set's alignment figures")] = None,
            photo_set: Annotated[Optional[str], typer.Option(
                "--set", help="a data.sets name: its own detect options (decoding limits) over the detect section")
            ] = None,
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Warp every detected subject onto the ArcFace 112x112 template."""
    summary = align(images, detections, out, section(params, "align", AlignParams),
                    set_detect_params(params, photo_set), section(params, "compute", ComputeParams).workers)
    write_metrics(metrics, summary)
    print_record(summary)
