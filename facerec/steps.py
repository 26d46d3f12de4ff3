"""One function per pipeline step: read inputs, call the library, write outputs atomically.

Both the DVC stage scripts (``stages/``) and the ``facerec`` CLI call these, so a stage run
and a command-line run produce identical files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from facerec.config import (AlignParams, BenchmarkParams, DetectParams, EvaluateParams, GateParams, TrainParams,
                            MonitorParams, TuneParams, ZooEntry)
from facerec.io import read_table, write_json, write_table

log = logging.getLogger(__name__)

MANIFEST = "manifest.parquet"
TRAIN_STATE_DIR = Path(".cache/facerec/train")
REJECTS = "rejects.parquet"


def detect(images: Path, out: Path, params: DetectParams) -> dict:
    """Detect faces in the photo set ``images`` (a folder or a CSV/parquet list); write
    OUT/manifest.parquet (every face, subjects marked) and OUT/rejects.parquet."""
    from facerec.detection.folder import detect_photos

    result = detect_photos(images, params)
    write_table(out / MANIFEST, result.manifest)
    write_table(out / REJECTS, result.rejects)
    return result.summary()


def align(images: Path, detections: Path, out: Path, params: AlignParams,
          detect_params: DetectParams) -> dict:
    """Write aligned 112×112 crops, OUT/manifest.parquet and OUT/rejects.parquet."""
    from facerec.alignment import align_manifest

    manifest = read_table(detections / MANIFEST)
    aligned, rejects = align_manifest(images, manifest, out, params, detect_params)
    write_table(out / MANIFEST, aligned)
    write_table(out / REJECTS, rejects)
    error = aligned["alignment_error"]
    return {"faces": len(aligned), "rejected": len(rejects),
            "identities": int(aligned["identity"].nunique()),
            "alignment_error_mean_px": float(error.mean()) if len(error) else None,
            "alignment_error_p95_px": float(error.quantile(0.95)) if len(error) else None}


def gate(name: str, images: Path, detections: Path, aligned_dir: Path, out_dir: Path,
         params: GateParams, training_set: bool) -> dict:
    """Validate one set's detections and aligned crops (Great Expectations) and draw its
    contact sheets. Writes OUT/<name>.json (the verdict and failures, a stable file later
    stages depend on), OUT/<name>.validation.json (GE's full results) and the sheets
    OUT/<name>_aligned.png and OUT/<name>_rejects.png. Raises GateFailed when it fails."""
    from facerec.contact_sheet import aligned_sheet, rejects_sheet
    from facerec.data.sources import photo_location
    from facerec.gate import GateFailed, validate_aligned, validate_detections

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
            raise GateFailed(result)
    return verdict


def detection_report(detect_dir: Path, align_dir: Path, params: DetectParams) -> dict:
    """metrics/detect.json: per set, the detection rate, speed and alignment error."""
    report = {"backend": params.backend, "min_score": params.min_score,
              "subject_rule": params.subject_rule, "sets": {}}
    for detected in sorted(detect_dir.glob("*.json")):
        aligned_file = align_dir / detected.name
        aligned = json.loads(aligned_file.read_text()) if aligned_file.exists() else {}
        report["sets"][detected.stem] = {**json.loads(detected.read_text()), **{
            key: aligned.get(key) for key in ("alignment_error_mean_px", "alignment_error_p95_px")}}
    return report


def train(aligned_dir: Path, checkpoint: Path, history_path: Path, params: TrainParams) -> dict:
    """Train a model on an aligned set (align's folder or insightface's train.rec); write the checkpoint, the per-step history and, beside
    it, validation.csv (one row per validation on held-out identities; empty without them).

    The resumable state lives in .cache/facerec/train/ (not a DVC out, which DVC would
    delete before rerunning the stage): a killed run, rerun, continues where it stopped.
    Under torchrun every process trains and rank 0 alone writes files."""
    from facerec.data.training_faces import training_manifest
    from facerec.distributed import world
    from facerec.training import train_model

    state = TRAIN_STATE_DIR / f"{params.model_name}.pt"
    result = train_model(aligned_dir, training_manifest(aligned_dir), params, checkpoint, state)
    if world()[0] == 0:
        write_table(history_path, result.history.round(6))
        validation = result.validation if len(result.validation) else pd.DataFrame(
            columns=["step", "epoch", "metric", "score", "best"])
        write_table(history_path.with_name("validation.csv"), validation.round(6))
    return result.summary


def tune(aligned_dir: Path, storage_dir: Path, trials_path: Path, report_path: Path, train: TrainParams,
         params: TuneParams) -> dict:
    """Search the margin head's hyperparameters (facerec.tuning) on the aligned training set;
    write every trial's values and score and Optuna's plots; return the best values.

    The study is kept in ``tune.storage`` or, by default, SQLite in ``storage_dir`` (not a
    DVC out, which DVC would delete before a rerun): a rerun resumes the study."""
    from facerec.data.training_faces import training_manifest
    from facerec.tuning import run_study, summary, trials_table
    from facerec.tuning_report import write_tuning_report

    storage_dir.mkdir(parents=True, exist_ok=True)
    url = params.storage or f"sqlite:///{(storage_dir / 'study.db').resolve()}"
    study, space = run_study(aligned_dir, training_manifest(aligned_dir), train, params, url)
    write_table(trials_path, trials_table(study).round(6))
    write_tuning_report(report_path, study)
    return summary(study, space, train.validation_metric, url)


def _evaluation_faces(aligned_dir: Path, pairs_file: Path, view1_files: Sequence[Path] = ()
                      ) -> tuple[pd.DataFrame, tuple[pd.DataFrame, pd.DataFrame] | None, pd.DataFrame]:
    """LFW's View 2 pairs, View 1's (pairsDevTrain, pairsDevTest) when given, and the aligned
    faces they name (every model is scored on these faces)."""
    from facerec.data.aligned import read_aligned_manifest
    from facerec.data.lfw import read_pairs
    from facerec.evaluation import protocol_faces

    pairs = read_pairs(pairs_file)
    view1 = (read_pairs(view1_files[0]), read_pairs(view1_files[1])) if view1_files else None
    return pairs, view1, protocol_faces(read_aligned_manifest(aligned_dir), pairs, *(view1 or ()))


def _score(aligned: pd.DataFrame, embeddings: np.ndarray, pairs: pd.DataFrame,
           view1: tuple[pd.DataFrame, pd.DataFrame] | None, roc_path: Path) -> dict:
    from facerec.evaluation import evaluate_lfw

    metrics, roc = evaluate_lfw(aligned, embeddings, pairs, view1)
    write_table(roc_path, roc)
    return metrics


def evaluate(checkpoint: Path, arch: str | None, aligned_dir: Path, pairs_file: Path,
             roc_path: Path, params: EvaluateParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of one model (View 1 too with ``view1_files``) and of the verification
    sets in ``params``; writes its ROC curve to ``roc_path``."""
    from facerec.data.aligned import load_crops
    from facerec.embedding import embed_crops
    from facerec.zoo import load_pretrained

    torch.set_num_threads(params.num_threads)
    model = load_pretrained(arch, checkpoint)
    pairs, view1, aligned = _evaluation_faces(aligned_dir, pairs_file, view1_files)
    embeddings = embed_crops(model, load_crops(aligned_dir, aligned["path"].tolist()),
                             params.batch_size, params.flip, params.precision)
    metrics = _score(aligned, embeddings, pairs, view1, roc_path)
    for path in params.verification_sets:
        metrics.update(evaluate_verification_set(model, path, params))
    return metrics


def evaluate_folder(checkpoint: Path, arch: str | None, aligned_dir: Path, roc_path: Path,
                    params: EvaluateParams) -> dict:
    """Verification over every pair and Rank-1/5 of one model on any aligned identity folder
    (the align stage's output for your own photos); writes the ROC to ``roc_path``."""
    from facerec.data.aligned import load_crops, read_aligned_manifest
    from facerec.embedding import embed_crops
    from facerec.evaluation import identity_set_metrics
    from facerec.zoo import load_pretrained

    torch.set_num_threads(params.num_threads)
    model = load_pretrained(arch, checkpoint)
    faces = read_aligned_manifest(aligned_dir).sort_values("source").reset_index(drop=True)
    embeddings = embed_crops(model, load_crops(aligned_dir, faces["path"].tolist()),
                             params.batch_size, params.flip, params.precision)
    metrics, roc = identity_set_metrics(faces, embeddings)
    write_table(roc_path, roc)
    return metrics


def evaluate_verification_set(model: torch.nn.Module, path: Path, params: EvaluateParams) -> dict:
    """``<stem>_accuracy`` etc. of a model on an insightface .bin set (lfw.bin, cfp_fp.bin, …)."""
    from facerec.data.verification_bin import decode_faces, read_verification_bin
    from facerec.embedding import embed_crops
    from facerec.evaluation import verification_set_metrics

    images, issame = read_verification_bin(path)
    log.info("%s: %d pairs", path, len(issame))
    embeddings = embed_crops(model, decode_faces(path, images), params.batch_size, params.flip, params.precision)
    return verification_set_metrics(Path(path).stem, embeddings, issame)


def evaluate_peer(name: str, images: Path, detections: Path, aligned_dir: Path, pairs_file: Path,
                  roc_path: Path, detect_params: DetectParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of a published peer (``facerec.peers``) on the faces our model is scored on,
    each cut from its photo by the peer's own crop (no flip: as its authors evaluate it)."""
    from facerec.peers import load_peer
    from facerec.peers.photos import embed_photo_faces, photo_faces

    embedder = load_peer(name)
    pairs, view1, aligned = _evaluation_faces(aligned_dir, pairs_file, view1_files)
    faces = photo_faces(images, read_table(detections / MANIFEST), aligned["source"].tolist(), detect_params)
    return _score(aligned, embed_photo_faces(embedder, faces, len(aligned)), pairs, view1, roc_path)


def _missing_checkpoint(entry: ZooEntry) -> str | None:
    """Why a checkpoint entry cannot run here (its file is missing), None for peers and present files.
    A peer's missing package is found when it is loaded (PeerUnavailable), not loaded twice to check."""
    from facerec.peers import PEERS

    if entry.arch in PEERS or entry.path.is_file():
        return None
    return f"checkpoint file not found: {entry.path}"


def _run_zoo(entries: list[ZooEntry], out_dir: Path, report_path: Path, run: Callable[[ZooEntry], dict]) -> dict:
    """``run(entry)`` for every entry that can run, writing OUT/<name>.json; ``report_path``
    lists those that ran and the skipped ones with their reason. Files of entries no longer
    listed are removed first, so the folder holds exactly this zoo."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.json"):
        stale.unlink()
    from facerec.peers import PeerUnavailable

    report = {"ran": [], "skipped": {}}
    for entry in entries:
        reason = _missing_checkpoint(entry)
        if reason is None:
            log.info("zoo entry %s (%s)", entry.name, entry.arch)
            try:
                write_metrics(out_dir / f"{entry.name}.json", run(entry))
                report["ran"].append(entry.name)
                continue
            except PeerUnavailable as error:
                reason = str(error)
        log.warning("zoo entry %s (%s) skipped: %s", entry.name, entry.arch, reason)
        report["skipped"][entry.name] = reason
    write_json(report_path, report)
    return report


def evaluate_zoo(entries: list[ZooEntry], images: Path, detections: Path, aligned_dir: Path, pairs_file: Path,
                 out_dir: Path, roc_dir: Path, report_path: Path, params: EvaluateParams,
                 detect_params: DetectParams, view1_files: Sequence[Path] = ()) -> dict:
    """LFW metrics of every zoo entry that can run: OUT/<name>.json and ROC/<name>.csv."""
    from facerec.peers import PEERS

    roc_dir.mkdir(parents=True, exist_ok=True)
    for stale in roc_dir.glob("*.csv"):
        stale.unlink()

    def run(entry: ZooEntry) -> dict:
        roc_path = roc_dir / f"{entry.name}.csv"
        if entry.arch in PEERS:
            return evaluate_peer(entry.arch, images, detections, aligned_dir, pairs_file, roc_path, detect_params,
                                 view1_files)
        return evaluate(entry.path, entry.arch, aligned_dir, pairs_file, roc_path, params, view1_files)
    return _run_zoo(entries, out_dir, report_path, run)


def benchmark(checkpoint: Path, arch: str | None, params: BenchmarkParams) -> dict:
    """Latency, throughput, size, GFLOPs and Mparams of one model on this CPU, in torch and onnxruntime."""
    from facerec.benchmark import benchmark_model
    from facerec.zoo import load_checkpoint

    torch.set_num_threads(params.num_threads)
    model, contents = load_checkpoint(checkpoint, arch)
    classifier = sum(tensor.numel() for tensor in contents.extras.values())
    return benchmark_model(model, checkpoint, classifier, params.warmup_runs, params.timed_runs,
                           params.throughput_batch_sizes)


def benchmark_zoo(entries: list[ZooEntry], out_dir: Path, report_path: Path, params: BenchmarkParams) -> dict:
    """Benchmark figures of every zoo entry that can run: OUT/<name>.json."""
    from facerec.benchmark import benchmark_embedder
    from facerec.peers import PEERS, load_peer, sample_face

    def run(entry: ZooEntry) -> dict:
        if entry.arch in PEERS:
            torch.set_num_threads(params.num_threads)
            return benchmark_embedder(load_peer(entry.arch), sample_face(), params.warmup_runs,
                                      params.timed_runs, params.throughput_batch_sizes)
        return benchmark(entry.path, entry.arch, params)
    return _run_zoo(entries, out_dir, report_path, run)


def leaderboard(evaluate_dirs: list[Path], benchmark_dirs: list[Path], roc_dirs: list[Path], zoo_reports: list[Path],
                out_dir: Path, sort_by: str) -> list[dict]:
    """metrics/leaderboard.json, .md, .png and the interactive .html from the per-model
    metrics files of ours and the zoo (the markdown and the page list the zoo entries that
    were skipped and why), and every model's ROC in one table, roc_all_models.csv."""
    from facerec.io import atomic_path
    from facerec.leaderboard import (COLUMNS, LOWER_IS_BETTER, build_leaderboard, combined_rocs, plot_leaderboard,
                                     skipped_models, to_markdown)
    from facerec.leaderboard_html import write_leaderboard_html

    records = build_leaderboard(evaluate_dirs, benchmark_dirs, sort_by)
    skipped = skipped_models([r for r in zoo_reports if r.exists()])
    write_json(out_dir / "leaderboard.json", records)
    with atomic_path(out_dir / "leaderboard.md") as tmp:
        tmp.write_text(to_markdown(records, skipped))
    plot_leaderboard(records, sort_by, out_dir / "leaderboard.png")
    write_leaderboard_html(out_dir / "leaderboard.html", records, COLUMNS, LOWER_IS_BETTER, sort_by, skipped)
    write_table(out_dir / "roc_all_models.csv", combined_rocs(roc_dirs).round(8))
    return records


def monitor(reference: tuple[Path, Path], current: tuple[Path, Path], checkpoint: Path, html_path: Path,
            json_path: Path, params: MonitorParams) -> dict:
    """Drift of the current set's faces against the reference (training) set's, each given as
    its (detections, aligned) folders, with our model's embeddings: Evidently's report to
    ``html_path`` and the verdict per feature to ``json_path``. Drift is a result, not an
    error: only missing or inconsistent input raises."""
    from facerec.io import atomic_path
    from facerec.monitoring import monitor_sets
    from facerec.zoo import load_pretrained

    torch.set_num_threads(params.num_threads)
    report, summary = monitor_sets(reference, current, load_pretrained(None, checkpoint), params)
    with atomic_path(html_path) as tmp:
        report.save_html(str(tmp))  # Evidently writes to a str path only (a Path is silently ignored)
    write_json(json_path, summary)
    return summary


def write_metrics(path: Path, metrics: dict) -> None:
    write_json(path, metrics)
    log.info("wrote %s: %s", path, json.dumps(metrics)[:500])
