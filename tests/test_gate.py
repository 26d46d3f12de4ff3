"""The data gates on real pipeline outputs: the CelebA training set's detect manifest and
aligned crops (data/, produced by ``dvc repro``), clean and with one defect planted at a time."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facerec.data.aligned import read_crop_bytes, write_crops
from facerec.quality.expectations import GateFailed, GateResult, validate_aligned, validate_detections


@pytest.fixture(scope="module")
def train_data(small_project) -> Path:
    """Outputs of the real pipeline run on the small real project (conftest)."""
    return small_project / "data"


def with_face_columns(manifest: pd.DataFrame) -> pd.DataFrame:
    """A one-row-per-photo manifest in the per-face schema: its row is face 0, the subject,
    found by the detector (not the whole-image fallback). Columns already there are kept."""
    defaults = {"face": 0, "subject": True, "whole_image": False}
    return manifest.assign(**{key: value for key, value in defaults.items() if key not in manifest})


def out_of_bounds(manifest: pd.DataFrame) -> pd.Series:
    """Rows whose box leaves the image or whose landmarks lie more than a quarter of the box
    outside it, by plain pandas."""
    bad = ((manifest.x1 < 0) | (manifest.y1 < 0) | (manifest.x2 > manifest.width) | (manifest.y2 > manifest.height)
           | (manifest.x1 >= manifest.x2) | (manifest.y1 >= manifest.y2))
    width, height = manifest.x2 - manifest.x1, manifest.y2 - manifest.y1
    for i in range(5):
        x, y = manifest[f"lm{i}_x"], manifest[f"lm{i}_y"]
        bad |= ((x < manifest.x1 - width / 4) | (x > manifest.x2 + width / 4)
                | (y < manifest.y1 - height / 4) | (y > manifest.y2 + height / 4))
    return bad


@pytest.fixture(scope="module")
def real_manifest(train_data) -> pd.DataFrame:
    return with_face_columns(pd.read_parquet(train_data / "detections" / "train" / "manifest.parquet"))


@pytest.fixture(scope="module")
def clean_manifest(real_manifest) -> pd.DataFrame:
    """The real manifest less the rows whose geometry the detector let out of bounds."""
    return real_manifest[~out_of_bounds(real_manifest)].reset_index(drop=True)


def failed(result: GateResult) -> dict[str, list]:
    """Failed expectation (short text) → its example rows."""
    return {failure["expectation"]: failure["examples"] for failure in result.failures}


def pair(a: str, b: str, or_equal: bool = True) -> str:
    suffix = ", or_equal=True" if or_equal else ""
    return f"expect_column_pair_values_a_to_be_greater_than_b(column_A={a}, column_B={b}{suffix})"


def test_real_manifest_with_geometry_in_bounds_passes(clean_manifest):
    result = validate_detections(clean_manifest, "detections:train")

    assert result.success, result.summary()
    assert result.failures == []
    assert result.statistics["unsuccessful_expectations"] == 0
    assert result.summary().startswith("detections:train: PASS")


def test_real_manifest_fails_exactly_on_the_rows_out_of_bounds(real_manifest):
    bad_paths = set(real_manifest.path[out_of_bounds(real_manifest)])

    result = validate_detections(real_manifest, "detections:train")

    assert result.success == (not bad_paths), result.summary()
    flagged = {path for failure in result.failures for path in failure["examples"]}
    assert flagged <= bad_paths
    # Every bad row breaks at least one expectation (the examples above are capped).
    assert sum(failure["unexpected_count"] for failure in result.failures) >= len(bad_paths)
    assert all(failure["expectation"].startswith(("expect_column_pair_values_a_to_be_greater_than_b",
                                                  "expect_column_values_to_be_between(column=x1",
                                                  "expect_column_values_to_be_between(column=lm",
                                                  "expect_column_values_to_be_between(column=y1"))
               for failure in result.failures), result.summary()


def in_box(landmark: str) -> str:
    return f"expect_column_values_to_be_between(column={landmark}_in_box, min_value=-0.25, max_value=1.25)"


Plant = Callable[[pd.DataFrame], str]  # edits the frame in place, returns the offending path


def _set(column: str, value: Callable[[pd.Series], object]) -> Plant:
    def plant(frame: pd.DataFrame) -> str:
        frame.at[100, column] = value(frame.loc[100])
        return frame.at[100, "path"]
    return plant


def _second_subject(frame: pd.DataFrame) -> str:
    frame.loc[len(frame)] = frame.loc[100].copy()
    frame.loc[len(frame) - 1, "face"] = 1
    return frame.at[100, "path"]


def _same_face_twice(frame: pd.DataFrame) -> str:
    frame.loc[len(frame)] = frame.loc[100].copy()
    frame.loc[len(frame) - 1, "subject"] = False
    return frame.at[100, "path"]


DEFECTS = {
    "box_right_edge_beyond_width": (_set("x2", lambda row: row.width + 1.0), [pair("width", "x2")]),
    "box_bottom_edge_beyond_height": (_set("y2", lambda row: row.height + 1.0), [pair("height", "y2")]),
    "box_left_edge_negative": (_set("x1", lambda row: -1.0),
                               ["expect_column_values_to_be_between(column=x1, min_value=0.0)"]),
    "landmark_below_its_box": (_set("lm2_y", lambda row: row.y2 + 0.3 * (row.y2 - row.y1)),
                               [in_box("lm2_y")]),
    "landmark_left_of_its_box": (_set("lm0_x", lambda row: row.x1 - 0.3 * (row.x2 - row.x1)),
                                 [in_box("lm0_x")]),
    "landmark_missing": (_set("lm4_x", lambda row: np.nan),
                         ["expect_column_values_to_not_be_null(column=lm4_x)"]),
    "score_above_one": (_set("score", lambda row: 1.5),
                        ["expect_column_values_to_be_between(column=score, min_value=0.0, max_value=1.0)"]),
    "empty_identity": (_set("identity", lambda row: ""),
                       ["expect_column_values_to_match_regex(column=identity, regex=\\S)"]),
    "blank_identity": (_set("identity", lambda row: "  "),
                       ["expect_column_values_to_match_regex(column=identity, regex=\\S)"]),
    "missing_identity": (_set("identity", lambda row: None),
                         ["expect_column_values_to_not_be_null(column=identity)"]),
    "two_subjects_in_one_photo": (_second_subject,
                                  ["expect_column_values_to_be_unique(column=path, row_condition=subject == True)"]),
    "same_face_listed_twice": (_same_face_twice,
                               ["expect_compound_columns_to_be_unique(column_list=['path', 'face'])"]),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_planted_defect_fails_its_expectation_naming_the_row(clean_manifest, defect):
    plant, expected = DEFECTS[defect]
    frame = clean_manifest.copy()
    path = plant(frame)

    result = validate_detections(frame, "detections:train")

    assert not result.success
    assert sorted(failed(result)) == sorted(expected), result.summary()
    for expectation in expected:
        assert failed(result)[expectation] == [path]
        assert expectation in result.summary() and path in result.summary()


def test_a_second_non_subject_face_of_a_photo_passes(clean_manifest):
    frame = clean_manifest.copy()
    frame.loc[len(frame)] = frame.loc[100].copy()
    frame.loc[len(frame) - 1, ["face", "subject"]] = [1, False]
    frame.loc[frame.path == frame.at[100, "path"], "faces"] = 2

    assert validate_detections(frame, "detections:train").success


def test_a_missing_column_fails_naming_it(clean_manifest):
    result = validate_detections(clean_manifest.drop(columns="whole_image"), "detections:train")

    assert not result.success
    assert "expect_table_columns_to_match_set" in result.summary()
    assert "'missing': ['whole_image']" in result.summary()


def test_identities_with_too_few_subject_images_fail_naming_the_identity(clean_manifest):
    counts = clean_manifest.identity.value_counts()
    rarest, fewest = counts.index[-1], int(counts.iloc[-1])
    # A second, non-subject face adds a row but not an image of the identity.
    frame = clean_manifest.copy()
    frame.loc[len(frame)] = frame[frame.identity == rarest].iloc[0]
    frame.loc[len(frame) - 1, ["face", "subject"]] = [1, False]

    enough = validate_detections(frame, "detections:train", min_images_per_identity=fewest)
    too_few = validate_detections(frame, "detections:train", min_images_per_identity=fewest + 1)

    assert enough.success, enough.summary()
    assert not too_few.success
    expectation = f"expect_column_values_to_be_between(column=images, min_value={float(fewest + 1)})"
    assert list(failed(too_few)) == [expectation]
    assert rarest in failed(too_few)[expectation]
    assert set(failed(too_few)[expectation]) <= set(counts.index[counts <= fewest])


def test_result_is_json_serialisable_and_gate_failed_carries_it(clean_manifest):
    frame = clean_manifest.copy()
    frame.at[0, "score"] = 1.5
    result = validate_detections(frame, "detections:train")

    json.dumps(result.raw)
    assert set(result.raw) == {"rows"}
    assert result.statistics["unsuccessful_expectations"] == 1
    error = GateFailed(result)
    assert error.result is result
    assert str(error) == result.summary()
    assert str(error).startswith("detections:train: FAIL")


def test_validation_opens_no_network_connection(clean_manifest, monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is off in this test")

    for name in ("create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)

    assert validate_detections(clean_manifest.head(200), "detections:train").success
    assert attempts == []


@pytest.fixture
def aligned_subset(tmp_path, train_data) -> tuple[Path, pd.DataFrame]:
    """20 real crops of two identities, copied with their manifest rows."""
    aligned = train_data / "aligned" / "train"
    manifest = pd.read_parquet(aligned / "manifest.parquet")
    rows = pd.concat([group.head(10) for _, group in list(manifest.groupby("identity"))[:2]], ignore_index=True)
    write_crops(tmp_path, rows.path, read_crop_bytes(aligned, list(rows.path)))
    return tmp_path, rows


def test_real_aligned_crops_pass(aligned_subset):
    folder, manifest = aligned_subset

    result = validate_aligned(folder, manifest, "aligned:train")

    assert result.success, result.summary()
    assert result.statistics["evaluated_expectations"] == 6


def test_bad_crops_each_fail_their_expectation_by_name(aligned_subset):
    folder, manifest = aligned_subset
    crops = read_crop_bytes(folder, list(manifest.path))
    real = Image.open(io.BytesIO(crops[0])).convert("RGB")
    identity = manifest.identity[0]

    def encoded(image: Image.Image, kind: str = "JPEG") -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, kind)
        return buffer.getvalue()

    bad = {
        "grey": encoded(Image.new("RGB", (112, 112), (128, 128, 128))),
        "small": encoded(real.resize((100, 100))),
        "grayscale": encoded(real.convert("L")),
        "png": encoded(real, "PNG"),
        "text": b"not an image\n",
        "truncated": crops[1][:600],
    }
    extra = [f"{identity}/{name}.jpg" for name in [*bad, "missing"]]
    write_crops(folder, [*manifest.path, *extra[:-1]], [*crops, *bad.values()])
    rows = pd.DataFrame({"path": extra, "source": extra, "identity": identity, "alignment_error": 1.0})
    frame = pd.concat([manifest, rows, manifest.head(1)], ignore_index=True)

    result = validate_aligned(folder, frame, "aligned:train")

    path = f"{identity}/{{}}.jpg".format
    assert not result.success
    assert failed(result) == {
        "expect_column_values_to_be_unique(column=path)": [manifest.path[0]],
        "expect_column_values_to_be_in_set(column=readable, value_set=[True])":
            [path("png"), path("text"), path("truncated"), path("missing")],
        "expect_column_values_to_be_in_set(column=height, value_set=[112])": [path("small")],
        "expect_column_values_to_be_in_set(column=width, value_set=[112])": [path("small")],
        "expect_column_values_to_be_in_set(column=channels, value_set=[3])": [path("grayscale")],
        "expect_column_values_to_be_between(column=pixel_std, min_value=2.0, strict_min=True)": [path("grey")],
    }, result.summary()
    assert all(name in result.summary() for name in [*bad, "missing"])


def test_a_set_whose_every_photo_is_rejected_ends_in_empty_outputs_and_a_gate_failure_naming_it(tmp_path):
    from facerec.config import AlignParams, ComputeParams, DetectParams, GateParams
    from facerec.pipeline.align import align
    from facerec.pipeline.detect import detect
    from facerec.pipeline.gate import gate

    photos = tmp_path / "photos" / "Ann"
    photos.mkdir(parents=True)
    (photos / "notes.jpg").write_text("not a photo")
    Image.new("L", (16, 16)).save(photos / "tiny.pgm")
    Image.new("RGB", (200, 200), (90, 90, 90)).save(photos / "blank.ppm")
    detect_params = DetectParams(cache=None)
    result = detect(tmp_path / "photos", tmp_path / "detections", detect_params, ComputeParams(workers=1))
    assert result.summary()["accepted"] == 0 and result.summary()["files"] == 3
    manifest = pd.read_parquet(tmp_path / "detections" / "manifest.parquet")
    assert manifest.empty and manifest["subject"].dtype == bool and "lm4_y" in manifest
    rejects = pd.read_parquet(tmp_path / "detections" / "rejects.parquet")
    assert dict(zip(rejects["path"], rejects["reason"].str.split(":").str[0])) == {
        "Ann/notes.jpg": "not an image", "Ann/tiny.pgm": "image too small", "Ann/blank.ppm": "no face found"}
    assert align(tmp_path / "photos", tmp_path / "detections", tmp_path / "aligned", AlignParams(),
                 detect_params)["faces"] == 0
    with pytest.raises(GateFailed, match=r"^set 'mine' has no face at all: 3 photos, every one rejected "
                                         r"\(1 image too small, 1 no face found, 1 not an image\)\n"):
        gate("mine", tmp_path / "photos", tmp_path / "detections", tmp_path / "aligned", tmp_path / "gate",
             GateParams(), training_set=False)
    assert json.loads((tmp_path / "gate" / "mine.json").read_text())["success"] is False
    assert (tmp_path / "gate" / "mine_rejects.png").stat().st_size > 0
