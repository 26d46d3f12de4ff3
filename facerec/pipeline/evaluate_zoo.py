"""Stage evaluate_zoo: LFW metrics of every zoo entry that can run here, on our faces.

Checkpoints are scored like ours (same crops, flip); peers cut their own crops from the
photos at our detections (no flip: as their authors evaluate them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from facerec.config import DetectParams, EvaluateParams, ZooEntry
from facerec.models.peers.load import load_peer
from facerec.models.peers.photos import embed_photo_faces, photo_faces
from facerec.models.zoo import run_zoo
from facerec.pipeline.common import DEFAULT_PARAMS, MANIFEST, ParamsOption, load, print_record
from facerec.pipeline.evaluate import evaluate, evaluation_faces, score_lfw
from facerec.registry import PEERS
from facerec.runtime.io import read_table


def evaluate_peer(name: str, images: Path, detections: Path, aligned_dir: Path, pairs_file: Path,
                  roc_path: Path, detect_params: DetectParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of a published peer (``facerec.models.peers``) on the faces our model is scored on."""
    embedder = load_peer(name)
    pairs, view1, aligned = evaluation_faces(aligned_dir, pairs_file, view1_files)
    faces = photo_faces(images, read_table(detections / MANIFEST), aligned["source"].tolist(), detect_params)
    return score_lfw(aligned, embed_photo_faces(embedder, faces, len(aligned)), pairs, view1, roc_path)


def evaluate_zoo(entries: list[ZooEntry], images: Path, detections: Path, aligned_dir: Path, pairs_file: Path,
                 out_dir: Path, roc_dir: Path, report_path: Path, params: EvaluateParams,
                 detect_params: DetectParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of every zoo entry that can run: OUT/<name>.json and ROC/<name>.csv."""
    roc_dir.mkdir(parents=True, exist_ok=True)
    for stale in roc_dir.glob("*.csv"):
        stale.unlink()

    def run(entry: ZooEntry) -> dict:
        roc_path = roc_dir / f"{entry.name}.csv"
        if entry.arch in PEERS:
            return evaluate_peer(entry.arch, images, detections, aligned_dir, pairs_file, roc_path, detect_params,
                                 view1_files)
        assert entry.path is not None  # ZooEntry requires a path for checkpoint entries
        return evaluate(entry.path, entry.arch, aligned_dir, pairs_file, roc_path, params, view1_files)
    return run_zoo(entries, out_dir, report_path, run)


def command(detections: Annotated[Path, typer.Option(help="detect's output folder of the LFW images")],
            aligned: Annotated[Path, typer.Option(help="align's output folder of them")],
            out: Annotated[Path, typer.Option(help="folder for <name>.json")] = Path("metrics/zoo/evaluate"),
            roc: Annotated[Path, typer.Option(help="folder for <name>.csv")] = Path("metrics/zoo/roc"),
            report: Annotated[Path, typer.Option(help="JSON of the entries run and skipped")] = Path(
                "metrics/zoo/evaluate_report.json"),
            params: ParamsOption = DEFAULT_PARAMS) -> None:
    """LFW metrics of every entry of the params file's zoo that can run here."""
    settings = load(params)
    print_record(evaluate_zoo(settings.zoo, settings.data.sets[settings.data.eval_set], detections, aligned,
                              settings.data.lfw_pairs, out, roc, report, settings.evaluate, settings.detect,
                              settings.data.lfw_view1_pairs))
