"""The `facerec` command's detect contract on a folder it has never seen."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
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
