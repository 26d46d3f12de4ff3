"""The whole pipeline through the real `dvc repro` on a small real subset of the data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run

# The session fixture runs the whole pipeline (about 5 minutes on 2 cores) inside the first test.
pytestmark = pytest.mark.timeout(1800)

EVALUATION_KEYS = {"lfw_accuracy", "lfw_accuracy_std", "lfw_view1_accuracy", "roc_auc", "eer", "accuracy",
                   "tar_at_far_1e-2", "tar_at_far_1e-3", "tar_at_far_1e-4", "rank1", "rank5"}
LEADERBOARD_KEYS = EVALUATION_KEYS | {"model", "latency_ms", "throughput_fps", "size_mb", "gflops", "mparams"}


def _params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def test_every_input_file_is_accepted_or_rejected_with_a_reason(small_project):
    for name, folder in _params(small_project)["data"]["sets"].items():
        on_disk = {p.relative_to(folder).as_posix() for p in Path(folder).rglob("*") if p.is_file()}
        manifest = pd.read_parquet(small_project / "data" / "detections" / name / "manifest.parquet")
        rejects = pd.read_parquet(small_project / "data" / "detections" / name / "rejects.parquet")
        photos = manifest[manifest["subject"]]
        assert set(manifest["path"]).isdisjoint(rejects["path"])
        assert sorted([*photos["path"], *rejects["path"]]) == sorted(on_disk)
        assert set(manifest["path"]) == set(photos["path"])  # other faces belong to accepted photos
        assert rejects["reason"].str.len().gt(0).all()
    rejects = pd.read_parquet(small_project / "data" / "detections" / "train" / "rejects.parquet")
    reasons = dict(zip(rejects["path"].str.rsplit("/", n=1).str[-1], rejects["reason"]))
    assert reasons["notes.txt"].startswith("not an image")
    assert "truncated" in reasons["truncated.jpg"]


def test_aligned_faces_are_112_crops_of_the_detected_photos(small_project):
    aligned_dir = small_project / "data" / "aligned" / "train"
    aligned = pd.read_parquet(aligned_dir / "manifest.parquet")
    detected = pd.read_parquet(small_project / "data" / "detections" / "train" / "manifest.parquet")
    assert sorted(aligned["source"]) == sorted(detected.loc[detected["subject"], "path"])
    from PIL import Image
    for path in aligned["path"].head(20):
        with Image.open(aligned_dir / path) as crop:
            assert crop.size == (112, 112) and crop.mode == "RGB"
    assert aligned["alignment_error"].median() < 6.0


def test_data_gates_pass_and_write_results_and_contact_sheets(small_project):
    gates = small_project / "metrics" / "gate"
    for name in _params(small_project)["data"]["sets"]:
        verdict = json.loads((gates / f"{name}.json").read_text())
        assert verdict["success"] and verdict["detections"]["statistics"]["evaluated_expectations"] > 20
        raw = json.loads((gates / f"{name}.validation.json").read_text())
        assert {f"detections:{name}", f"aligned:{name}"} == set(raw)
        for sheet in ("aligned", "rejects"):
            assert (gates / f"{name}_{sheet}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((small_project / "metrics" / "detect.json").read_text())
    for figures in report["sets"].values():
        assert 0.8 <= figures["detection_rate"] <= 1.0
        assert figures["images_per_second"] > 0 and 0 < figures["alignment_error_mean_px"] < 6


def test_a_failed_gate_stops_the_pipeline_before_training(small_project, tmp_path):
    broken = tmp_path / "project"
    shutil.copytree(small_project, broken, symlinks=True)
    params = _params(small_project)
    params["gate"]["min_images_per_identity"] = 1000
    (broken / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = run(["dvc", "repro", "train"], broken, check=False)
    assert repro.returncode != 0
    output = repro.stdout + repro.stderr
    assert "data gate failed" in output and "expect_column_values_to_be_between(column=images" in output
    assert "Running stage 'train'" not in output


def test_metrics_files_hold_every_leaderboard_figure(small_project):
    model = _params(small_project)["train"]["model_name"]
    evaluation = json.loads((small_project / "metrics" / "evaluate" / f"{model}.json").read_text())
    assert EVALUATION_KEYS <= evaluation.keys()
    assert 0.5 <= evaluation["lfw_accuracy"] <= 1.0
    assert 0.0 <= evaluation["eer"] <= 0.5
    # View 1: a threshold from the small pairsDevTrain.txt, applied to its 12 pairsDevTest.txt pairs.
    assert evaluation["lfw_view1_pairs_scored"] + evaluation["lfw_view1_pairs_missing"] == 12
    board = {record["model"]: record for record in json.loads((small_project / "metrics" / "leaderboard.json").read_text())}
    assert set(board) == {model, "dlib_resnet_v1", "facenet_20180408"}
    ours = board[model]
    assert set(ours) == LEADERBOARD_KEYS
    assert ours["lfw_accuracy"] == evaluation["lfw_accuracy"]
    assert ours["latency_ms"] > 0 and ours["gflops"] > 0.1 and ours["mparams"] > 1
    benchmark = json.loads((small_project / "metrics" / "benchmark" / f"{model}.json").read_text())
    assert benchmark["onnx_latency_ms"] > 0 and ("bf16_latency_ms" in benchmark) == benchmark["bf16_native"]
    assert (small_project / "metrics" / "leaderboard.md").read_text().count(model) == 1
    history = pd.read_csv(small_project / "metrics" / "train" / "history.csv")
    assert {"step", "loss", "lr"} <= set(history.columns) and len(history) > 0


def test_the_default_leaderboard_ranks_published_peers_on_the_same_faces(small_project):
    """The default zoo: the two packaged peers run, the checkpoints nobody downloaded are listed as skipped."""
    model = _params(small_project)["train"]["model_name"]
    ours = json.loads((small_project / "metrics" / "evaluate" / f"{model}.json").read_text())
    for peer in ("dlib_resnet_v1", "facenet_20180408"):
        evaluation = json.loads((small_project / "metrics" / "zoo" / "evaluate" / f"{peer}.json").read_text())
        assert evaluation["faces"] == ours["faces"] and evaluation["lfw_pairs_scored"] == ours["lfw_pairs_scored"]
        assert evaluation["lfw_accuracy"] > 0.9
        benchmark = json.loads((small_project / "metrics" / "zoo" / "benchmark" / f"{peer}.json").read_text())
        assert benchmark["latency_ms"] > 0 and benchmark["size_mb"] > 1
    board = [record["model"] for record in json.loads((small_project / "metrics" / "leaderboard.json").read_text())]
    assert board.index(model) == 2  # one epoch on 12 people does not beat published models
    report = json.loads((small_project / "metrics" / "zoo" / "evaluate_report.json").read_text())
    skipped = {entry["name"] for entry in _params(small_project)["zoo"] if "path" in entry}
    assert set(report["skipped"]) == skipped and len(skipped) >= 4
    markdown = (small_project / "metrics" / "leaderboard.md").read_text()
    for name in skipped:
        assert f"- {name}: checkpoint file not found: " in markdown
    assert (small_project / "metrics" / "zoo" / "roc" / "dlib_resnet_v1.csv").exists()
    plots = json.loads(run(["dvc", "plots", "show", "--json"], small_project).stdout)["data"]
    assert "metrics/zoo/roc/facenet_20180408.csv" in plots
    # One chart holds every model's ROC, a colour per model.
    (all_models,) = plots["metrics/roc_all_models.csv"]
    assert all_models["content"]["encoding"]["color"]["field"] == "model"
    assert {point["model"] for point in all_models["content"]["data"]["values"]} == set(board)
    page = (small_project / "metrics" / "leaderboard.html").read_text()
    assert all(f'"model": "{name}"' in page for name in board) and "<script src" not in page


def test_second_repro_does_nothing_and_metrics_show_prints_figures(small_project):
    assert "Data and pipelines are up to date" in run(["dvc", "status"], small_project).stdout
    repro = run(["dvc", "repro"], small_project)
    assert "Running stage" not in repro.stdout
    shown = run(["dvc", "metrics", "show"], small_project).stdout
    assert "lfw_accuracy" in shown and "latency_ms" in shown


def test_a_branch_with_other_training_params_reruns_only_what_depends_on_them_and_dvc_diffs_it(small_project):
    """Two git branches with different params, each run by dvc repro and committed: dvc's
    params, metrics and plots diffs between the branches show what changed, and the zoo,
    which does not depend on our training, was not rerun."""
    model = _params(small_project)["train"]["model_name"]
    run(["git", "add", "-A"], small_project)
    run(["git", "commit", "-qm", "first run"], small_project)
    base = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], small_project).stdout.strip()
    run(["git", "checkout", "-qb", "other-seed"], small_project)
    params = _params(small_project)
    params["train"]["seed"] += 1
    (small_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = run(["dvc", "repro"], small_project).stdout
    ran = {line.split("'")[1] for line in repro.splitlines() if line.startswith("Running stage")}
    assert ran == {"train", "evaluate", "benchmark", "leaderboard"}
    run(["git", "add", "-A"], small_project)
    run(["git", "commit", "-qm", "train with another seed"], small_project)

    assert "train.seed" in run(["dvc", "params", "diff", base, "other-seed"], small_project).stdout
    metrics = json.loads(run(["dvc", "metrics", "diff", base, "other-seed", "--json"], small_project).stdout)
    ours = metrics[f"metrics/evaluate/{model}.json"]["lfw_accuracy"]
    assert ours["old"] != ours["new"] and ours["diff"] == pytest.approx(ours["new"] - ours["old"])
    assert not any(path.startswith("metrics/zoo/") for path in metrics)
    plots = json.loads(run(["dvc", "plots", "diff", base, "other-seed", "--json"], small_project).stdout)["data"]
    revisions = {point["rev"] for point in plots["metrics/roc_all_models.csv"][0]["content"]["data"]["values"]}
    assert revisions == {base, "other-seed"}
