"""The `facerec` command: every subcommand on the small real project, and detect on a folder it has never seen."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import CELEBA, LFW


def test_detect_accounts_for_every_file_under_the_folder(tmp_path):
    photos = tmp_path / "photos"
    person = sorted(CELEBA.iterdir())[5]
    shutil.copytree(person, photos / "person one", ignore=lambda _, names: sorted(names)[4:])
    (photos / "Ünïcode name").mkdir()
    shutil.copy2(LFW / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg", photos / "Ünïcode name" / "PHOTO 1.JPG")
    Image.new("RGB", (200, 200), (90, 90, 90)).save(photos / "person one" / "blank wall.png")
    (photos / "person one" / "empty.jpg").write_bytes(b"")
    (photos / "person one" / "readme.txt").write_text("a caption")
    (photos / "looks_like_a_file.jpg").mkdir()
    (photos / "looks_like_a_file.jpg" / "real.jpg").write_bytes((photos / "Ünïcode name" / "PHOTO 1.JPG").read_bytes())
    (photos / "stray.jpg").write_bytes((photos / "Ünïcode name" / "PHOTO 1.JPG").read_bytes())

    result = subprocess.run([sys.executable, "-m", "facerec", "detect", "--images", str(photos),
                             "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)  # the default detection cache lands in the cwd
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    rejects = pd.read_parquet(tmp_path / "out" / "rejects.parquet")
    on_disk = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*") if p.is_file())
    assert sorted([*manifest["path"], *rejects["path"]]) == on_disk
    reasons = dict(zip(rejects["path"], rejects["reason"]))
    assert reasons["person one/blank wall.png"].startswith("no face found")
    assert reasons["person one/empty.jpg"].startswith("not an image")
    assert reasons["person one/readme.txt"].startswith("not an image")
    assert reasons["stray.jpg"].startswith("no identity")
    assert {"Ünïcode name/PHOTO 1.JPG", "looks_like_a_file.jpg/real.jpg"} <= set(manifest["path"])
    row = manifest.set_index("path").loc["Ünïcode name/PHOTO 1.JPG"]
    assert row["identity"] == "Ünïcode name" and 0.9 <= row["score"] <= 1.0
    assert row["x1"] < row["lm0_x"] < row["lm1_x"] < row["x2"]  # eyes inside the box, left to right


def _facerec(project: Path, *arguments: str) -> str:
    """``facerec ARGUMENTS`` run in ``project`` (its params.yaml, its facerec); stdout."""
    result = subprocess.run([sys.executable, "-m", "facerec", *arguments], cwd=project, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, f"facerec {' '.join(arguments)}\n{result.stderr[-3000:]}"
    return result.stdout


def _same_bytes(first: Path, second: Path) -> bool:
    return first.read_bytes() == second.read_bytes()


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.timeout(1800)  # a retraining, two evaluations, a tuning trial and two benchmarks: minutes on 2 cores
def test_every_command_runs_on_the_small_project_and_writes_what_its_stage_wrote(project_copy, tmp_path):
    """Each `facerec` command on the small project that `dvc repro` built: the commands that
    mirror a stage, given the stage's inputs and params, write the stage's outputs again,
    byte for byte or figure for figure (one definition of each stage, one code path)."""
    project, out = project_copy, tmp_path / "cli"
    params = yaml.safe_load((project / "params.yaml").read_text())
    model = params["train"]["model_name"]
    train_set = params["data"]["sets"]["train"]["images"]
    staged = project / "models" / model / "model.pt"
    # The cheap zoo holds ours alone, so its train section starts from no zoo entry (one tuning trial from scratch).
    cheap = {**params, "tune": {**params["tune"], "n_trials": 1}, "train": {**params["train"], "init_from": None},
             "benchmark": {**params["benchmark"], "warmup_runs": 1, "timed_runs": 3},
             "zoo": {"ours_as_a_checkpoint": {"arch": params["train"]["backbone"], "path": str(staged)}}}
    (project / "cheap.yaml").write_text(yaml.safe_dump(cheap, sort_keys=False))

    _facerec(project, "detect", "--images", train_set, "--set", "train", "--out", f"{out}/det",
             "--metrics", f"{out}/det.json")
    assert _same_bytes(out / "det" / "manifest.parquet", project / "data" / "detections" / "train" / "manifest.parquet")
    assert _json(out / "det.json") == _json(project / "metrics" / "detect" / "train.json")
    _facerec(project, "align", "--images", train_set, "--set", "train", "--detections", f"{out}/det",
             "--out", f"{out}/al")
    assert _same_bytes(out / "al" / "manifest.parquet", project / "data" / "aligned" / "train" / "manifest.parquet")
    _facerec(project, "gate", "--name", "train", "--images", train_set, "--detections", f"{out}/det",
             "--aligned", f"{out}/al", "--out", f"{out}/gate")
    assert _json(out / "gate" / "train.json") == _json(project / "metrics" / "gate" / "train.json")
    _facerec(project, "detect-report", "--detections", "metrics/detect", "--alignments", "metrics/align",
             "--out", f"{out}/detect.json")
    assert _json(out / "detect.json") == _json(project / "metrics" / "detect.json")

    summary = json.loads(_facerec(project, "train", "--aligned", "data/aligned/train", "--checkpoint",
                                  f"{out}/model.pt", "--history", f"{out}/history.csv"))
    assert summary == _json(project / "metrics" / "train" / "summary.json")
    assert _same_bytes(out / "model.pt", staged)  # the same weights, bit for bit
    _facerec(project, "evalset", "--name", "lfw", "--out", f"{out}/evalset")
    assert _same_bytes(out / "evalset" / "faces.parquet", project / "data" / "evalsets" / "lfw" / "faces.parquet")
    _facerec(project, "evaluate", "--model", model, "--checkpoint", f"{out}/model.pt", "--set", f"{out}/evalset",
             "--roc", f"{out}/roc.csv", "--metrics", f"{out}/evaluate.json")
    assert _json(out / "evaluate.json") == _json(project / "metrics" / "evaluate" / "lfw" / f"{model}.json")
    folder = json.loads(_facerec(project, "evaluate-folder", "--checkpoint", f"{out}/model.pt",
                                 "--aligned", "data/aligned/train", "--detections", "data/detections/train",
                                 "--images", train_set, "--roc", f"{out}/folder_roc.csv"))
    assert folder["faces"] == len(pd.read_parquet(project / "data" / "aligned" / "train" / "manifest.parquet"))
    benchmark = json.loads(_facerec(project, "benchmark", "--checkpoint", f"{out}/model.pt", "--params", "cheap.yaml"))
    assert benchmark["mparams"] == _json(project / "metrics" / "benchmark" / f"{model}.json")["mparams"]
    board = _facerec(project, "leaderboard", "--out", f"{out}/board")
    assert model in board
    assert _json(out / "board" / "leaderboard.json") == _json(project / "metrics" / "leaderboard.json")
    _facerec(project, "monitor", "--reference-detections", "data/detections/train", "--reference-aligned",
             "data/aligned/train", "--current-detections", "data/detections/lfw",
             "--current-aligned", "data/aligned/lfw",
             "--checkpoint", f"{out}/model.pt", "--html", f"{out}/drift.html", "--json", f"{out}/drift.json")
    assert _json(out / "drift.json") == _json(project / "metrics" / "monitoring" / "drift.json")
    tuned = json.loads(_facerec(project, "tune", "--aligned", "data/aligned/train", "--storage-dir", f"{out}/tune",
                                "--trials", f"{out}/trials.csv", "--report", f"{out}/tune.html", "--metrics",
                                f"{out}/tune.json", "--params", "cheap.yaml"))
    assert tuned["trials"] == 1
    assert set(tuned["best_params"]) == set(_json(project / "metrics" / "tune.json")["best_params"])

    listed = json.loads(_facerec(project, "zoo", "list", params["train"]["backbone"], "--json"))
    classifier = summary["identities"] * params["train"]["embedding_size"] / 1e6  # benchmark counts the centres
    assert listed[0]["mparams"] + classifier == pytest.approx(benchmark["mparams"])
    inspected = json.loads(_facerec(project, "zoo", "inspect", f"{out}/model.pt"))
    assert inspected["recorded_arch"] == params["train"]["backbone"]
    assert inspected["mparams"] == pytest.approx(benchmark["mparams"])
    _facerec(project, "zoo", "evaluate", "--set", f"{out}/evalset", "--out", f"{out}/zoo", "--params", "cheap.yaml")
    assert _json(out / "zoo" / "ours_as_a_checkpoint.json") == _json(out / "evaluate.json")
    _facerec(project, "zoo", "benchmark", "--out", f"{out}/zoo_bench", "--report", f"{out}/zoo_bench.json",
             "--params", "cheap.yaml")
    assert _json(out / "zoo_bench.json") == {"ran": ["ours_as_a_checkpoint"], "skipped": {}}
    exported = json.loads(_facerec(project, "export", "--out", f"{out}/model.onnx", "--checkpoint", f"{out}/model.pt"))
    assert exported["max_abs_diff_normalised"] < 1e-3 and (out / "model.onnx").stat().st_size > 1e6
    _facerec(project, "stage-deps", "--check")
