"""Stage detect_report: every set's detection rate and alignment error in one file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from facerec.config import DetectParams
from facerec.pipeline.common import DEFAULT_PARAMS, ParamsOption, print_record, section, write_metrics


def detection_report(detect_dir: Path, align_dir: Path, params: DetectParams) -> dict:
    """Per set, detect's figures with align's alignment error, under the detector's settings."""
    report: dict = {"backend": params.backend, "min_score": params.min_score,
                    "subject_rule": params.subject_rule, "sets": {}}
    for detected in sorted(detect_dir.glob("*.json")):
        aligned_file = align_dir / detected.name
        aligned = json.loads(aligned_file.read_text()) if aligned_file.exists() else {}
        report["sets"][detected.stem] = {**json.loads(detected.read_text()), **{
            key: aligned.get(key) for key in ("alignment_error_mean_px", "alignment_error_p95_px")}}
    return report


def command(detections: Annotated[Path, typer.Option(help="folder of detect's <set>.json files")],
            alignments: Annotated[Path, typer.Option(help="folder of align's <set>.json files")],
            out: Annotated[Path, typer.Option(help="the report's JSON file")],
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Join every set's detection and alignment figures into one report."""
    report = detection_report(detections, alignments, section(params, "detect", DetectParams))
    write_metrics(out, report)
    print_record(report)
