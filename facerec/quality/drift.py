"""Drift monitoring: per-face features of a photo set, and Evidently's drift report between
a reference set (the training photos) and a current one (a new folder of photos).

Every feature is a number per aligned face, so that Evidently tests each distribution:
image quality of the 112×112 crop the model sees, the detector's view of the face, a
head-pose proxy from its 5 landmarks, and the model's embedding (its norm and a few
principal components fitted on the reference). Units are in ``FEATURES``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from facerec.config import MonitorParams
from facerec.data.aligned import ALIGNED_MANIFEST, load_crops
from facerec.evaluation.embedding import forward_crops
from facerec.faces.manifest import LANDMARK_COLUMNS, landmarks_of, subjects
from facerec.runtime.io import read_table

if TYPE_CHECKING:  # Evidently takes seconds to import: only where a report is made
    from evidently.core.report import Snapshot

log = logging.getLogger(__name__)

FEATURES = {
    "brightness": "mean grey level of the aligned crop, 0-255",
    "contrast": "standard deviation of the crop's grey levels",
    "sharpness": "variance of the crop's Laplacian (low: blurred)",
    "face_size": "side of the detected box in photo pixels, sqrt(width x height)",
    "detection_score": "the detector's confidence, 0-1",
    "yaw": "nose offset from the eye midpoint along the eye line, in inter-ocular distances (0: frontal)",
    "roll": "angle of the eye line in degrees (0: level eyes)",
    "pitch": "nose height between the eye line (0) and the mouth (1)",
    "embedding_norm": "length of the model's raw embedding (no flip), a face-quality proxy",
}
COMPONENT = "embedding_pc{}"  # principal components of the unit embeddings, fitted on the reference


class MonitorInputError(ValueError):
    """A monitored set's files are missing or inconsistent; the message names the file."""


@dataclass
class FaceSample:
    """Features of a sample of one set's aligned faces."""

    features: pd.DataFrame  # one row per face, the FEATURES columns
    embeddings: np.ndarray  # N×D unit-length embeddings, rows as in ``features``


def sample_faces(detections_dir: Path, aligned_dir: Path, max_faces: int, seed: int) -> tuple[pd.DataFrame, int]:
    """A seeded random sample of at most ``max_faces`` aligned faces, each with its
    detection row (box, score, landmarks); and the number of aligned faces in the set."""
    aligned = _read_manifest(aligned_dir, ["path", "source"])
    detections = _read_manifest(detections_dir, ["path", "subject", "score", "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS])
    faces = aligned.merge(subjects(detections).drop(columns=["identity"], errors="ignore"),
                          left_on="source", right_on="path", suffixes=("", "_photo"))
    if len(faces) < len(aligned):
        raise MonitorInputError(f"{aligned_dir / 'manifest.parquet'}: {len(aligned) - len(faces)} aligned faces have "
                                f"no subject face in {detections_dir / 'manifest.parquet'}: rerun align on these "
                                "detections")
    if faces.empty:
        raise MonitorInputError(f"{aligned_dir / 'manifest.parquet'}: no aligned faces to monitor")
    sample = faces.sample(n=max_faces, random_state=seed) if len(faces) > max_faces else faces
    return sample.reset_index(drop=True), len(faces)


def _read_manifest(folder: Path, columns: list[str]) -> pd.DataFrame:
    """The manifest.parquet that the detect and the align stage each write in their folder."""
    path = Path(folder) / ALIGNED_MANIFEST
    try:
        table = read_table(path)
    except FileNotFoundError:
        raise MonitorInputError(f"{path}: not found; run the detect and align stages for this set first") from None
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise MonitorInputError(f"{path}: missing columns {missing}")
    return table


def image_features(crops: torch.Tensor) -> pd.DataFrame:
    """Brightness, contrast and sharpness of uint8 RGB crops N×3×H×W."""
    grey = [cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) for crop in crops.permute(0, 2, 3, 1).numpy()]
    return pd.DataFrame({
        "brightness": [float(image.mean()) for image in grey],
        "contrast": [float(image.std()) for image in grey],
        "sharpness": [float(cv2.Laplacian(image, cv2.CV_64F).var()) for image in grey],
    })


def pose_features(landmarks: np.ndarray) -> pd.DataFrame:
    """Yaw, roll and pitch proxies from N×5×2 landmarks in photo pixels (left eye, right eye,
    nose, left and right mouth corners, as seen in the photo). Ratios of landmark distances,
    so they do not depend on the face's size in the photo."""
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(landmarks, np.float64).transpose(1, 0, 2)
    eye_line = right_eye - left_eye
    inter_ocular = np.linalg.norm(eye_line, axis=1)
    along = eye_line / inter_ocular[:, None]
    down = np.stack([-along[:, 1], along[:, 0]], axis=1)  # perpendicular to the eye line, towards the mouth
    nose_offset = nose - (left_eye + right_eye) / 2
    mouth_offset = (mouth_left + mouth_right) / 2 - (left_eye + right_eye) / 2
    return pd.DataFrame({
        "yaw": (nose_offset * along).sum(axis=1) / inter_ocular,
        "roll": np.degrees(np.arctan2(eye_line[:, 1], eye_line[:, 0])),
        "pitch": (nose_offset * down).sum(axis=1) / (mouth_offset * down).sum(axis=1),
    })


def face_features(faces: pd.DataFrame, aligned_dir: Path, model: nn.Module, params: MonitorParams) -> FaceSample:
    """The FEATURES of aligned faces (``sample_faces`` rows; crops in the align stage's
    folder ``aligned_dir``) and their embeddings by ``model`` (raw: their norm is a feature)."""
    crops = load_crops(aligned_dir, faces["path"].tolist())
    embeddings = forward_crops(model, crops, params.batch_size, runtime=params.runtime, num_threads=params.num_threads)
    norms = np.linalg.norm(embeddings, axis=1)
    features = pd.concat([
        image_features(crops),
        pd.DataFrame({"face_size": np.sqrt((faces["x2"] - faces["x1"]) * (faces["y2"] - faces["y1"])),
                      "detection_score": faces["score"]}),
        pose_features(landmarks_of(faces)),
        pd.DataFrame({"embedding_norm": norms}),
    ], axis=1)
    return FaceSample(features[list(FEATURES)], embeddings / norms[:, None])


def with_components(reference: FaceSample, current: FaceSample, components: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both samples' features plus ``components`` principal components of their embeddings,
    the PCA fitted on the reference: a shift in what the model sees, in a few columns."""
    from sklearn.decomposition import PCA

    if components == 0:
        return reference.features, current.features
    if components > min(reference.embeddings.shape):
        raise MonitorInputError(f"monitor.components: {components} principal components need at least as many "
                                f"reference faces and embedding dimensions, got {reference.embeddings.shape}")
    pca = PCA(components, random_state=0).fit(reference.embeddings)
    names = [COMPONENT.format(index + 1) for index in range(components)]
    return tuple(pd.concat([sample.features, pd.DataFrame(pca.transform(sample.embeddings), columns=names)], axis=1)
                 for sample in (reference, current))


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, params: MonitorParams) -> Snapshot:
    """Evidently's data drift report of every
    numerical column of ``current`` against ``reference``, with its pass/fail tests: one per
    column (drift detected or not) and one for the share of drifted columns."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=list(reference.columns))
    preset = DataDriftPreset(drift_share=params.drift_share, method=params.method, threshold=params.threshold)
    return Report([preset], include_tests=True).run(Dataset.from_pandas(current, data_definition=definition),
                                                    Dataset.from_pandas(reference, data_definition=definition))


def drift_summary(result: dict, reference: pd.DataFrame, current: pd.DataFrame) -> dict:
    """The flat verdict of a report's ``Snapshot.dict()``: whether the set drifted, and per
    feature its drift score, test, threshold, verdict and the two means."""
    tests = {(test["metric_config"]["params"]["type"], test["metric_config"]["params"].get("column")): test["status"]
             for test in result["tests"]}
    count = next(metric for metric in result["metrics"] if metric["config"]["type"].endswith(":DriftedColumnsCount"))
    features = {}
    for metric in result["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":ValueDrift"):
            column = config["column"]
            features[column] = {
                "drift_detected": tests[(config["type"], column)] == "FAIL",
                "score": float(metric["value"]), "method": config["method"], "threshold": config["threshold"],
                "reference_mean": float(reference[column].mean()), "current_mean": float(current[column].mean())}
    return {"dataset_drift": tests[(count["config"]["type"], None)] == "FAIL",
            "drifted_features": int(count["value"]["count"]), "features": len(features),
            "drifted_share": float(count["value"]["share"]), "drift_share": count["config"]["drift_share"],
            "feature_drift": features}


def monitor_sets(reference: tuple[Path, Path], current: tuple[Path, Path], model: nn.Module,
                 params: MonitorParams) -> tuple[Snapshot, dict]:
    """Drift of the ``current`` set's faces against the ``reference`` set's, each given as its
    (detections, aligned) folders, with ``model``'s embeddings. Returns Evidently's report
    (``save_html``) and the flat summary (``drift_summary`` plus each side's
    aligned folder, faces and sampled faces)."""
    # Both sides' manifests are read first: bad input fails in seconds, not after the embeddings.
    sides = {name: (aligned, *sample_faces(detections, aligned, params.max_faces, params.seed))
             for name, (detections, aligned) in (("reference", reference), ("current", current))}
    samples: list[FaceSample] = []
    for aligned, faces, total in sides.values():
        log.info("features of %d of the %d faces in %s", len(faces), total, aligned)
        samples.append(face_features(faces, aligned, model, params))
    reference_sample, current_sample = samples
    features = with_components(reference_sample, current_sample, params.components)
    report = drift_report(*features, params)
    counts = {name: {"aligned": str(aligned), "faces": total, "sampled": len(faces)}
              for name, (aligned, faces, total) in sides.items()}
    return report, {**counts, **drift_summary(report.dict(), *features)}


def drift_markdown(summary: dict, title: str = "Face data drift") -> str:
    """A markdown table of a ``drift_summary``: the verdict, then every feature."""
    verdict = "**drift detected**" if summary["dataset_drift"] else "no drift"
    lines = [f"# {title}: {verdict}", "",
             f"{summary['drifted_features']} of {summary['features']} features drifted "
             f"(share {summary['drifted_share']:.2f}; the set counts as drifted from {summary['drift_share']:.2f}). "
             f"Reference {summary['reference']['aligned']}: {summary['reference']['sampled']} faces sampled of "
             f"{summary['reference']['faces']}; current {summary['current']['aligned']}: "
             f"{summary['current']['sampled']} of {summary['current']['faces']}.", "",
             "| feature | drifted | score | test | threshold | reference mean | current mean |",
             "|---|---|---|---|---|---|---|"]
    for name, feature in summary["feature_drift"].items():
        lines.append(f"| {name} | {'yes' if feature['drift_detected'] else 'no'} | {feature['score']:.4g} | "
                     f"{feature['method']} | {feature['threshold']:.4g} | {feature['reference_mean']:.4g} | "
                     f"{feature['current_mean']:.4g} |")
    return "\n".join(lines) + "\n"
