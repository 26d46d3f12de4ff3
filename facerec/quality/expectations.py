"""Data gates between pipeline stages: Great Expectations suites over the detect manifest
and the aligned crops, validated in memory (ephemeral context, no Data Docs, no stores).

A gate returns a ``GateResult``; the caller decides whether a failure stops the pipeline
(``raise GateFailed(result)``). Offending rows are identified by their ``path`` column
(relative to the photo set or the aligned folder), or by ``identity`` for per-identity counts.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from facerec.data.aligned import crop_table

# GE logs its own set-up (registries, a temporary docs folder per context) at INFO; a stage
# logging at INFO should show our lines, not GE's. Set before the import, which logs too;
# one GE module sets its own logger to INFO on import, so it is lowered after.
logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.expectations.row_conditions import Column, deserialize_row_condition  # noqa: E402

logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)

E = gx.expectations

LANDMARK_COLUMNS = [f"lm{i}_{axis}" for i in range(5) for axis in "xy"]
DETECTION_COLUMNS = ["path", "identity", "face", "subject", "faces", "width", "height", "score",
                     "x1", "y1", "x2", "y2", *LANDMARK_COLUMNS, "whole_image"]
LANDMARK_MARGIN = 0.25  # how far outside its box, as a fraction of the box, a landmark may lie
CROP_SIZE = 112  # px, the ArcFace template's side (facerec.faces.alignment)
EXAMPLES = 10  # offending rows GE reports per expectation, and the summary repeats


@dataclass
class GateResult:
    """The outcome of one gate.

    ``failures`` has one entry per failed expectation: ``expectation`` (type and arguments,
    short text), ``unexpected_count`` (rows that broke it; 0 where it is not row-wise) and
    ``examples`` (the first offending rows' ``path`` or ``identity``, or for a table-level
    expectation what was observed). ``raw`` maps each validated frame's name to GE's
    JSON-serialisable validation result.
    """

    name: str
    success: bool
    failures: list[dict]
    statistics: dict
    raw: dict

    def summary(self) -> str:
        """PASS/FAIL with counts, then one line per failed expectation with example rows."""
        counts = self.statistics
        head = (f"{self.name}: {'PASS' if self.success else 'FAIL'} "
                f"({counts['successful_expectations']} of {counts['evaluated_expectations']} expectations met)")
        lines = [head]
        for failure in self.failures:
            shown = ", ".join(str(example) for example in failure["examples"])
            lines.append(f"  - {failure['expectation']}: {failure['unexpected_count']} unexpected; e.g. {shown}")
        return "\n".join(lines)


class GateFailed(Exception):
    """A gate failed; ``result`` holds the details and ``str()`` is its summary (after a
    headline, when the caller knows the cause in a sentence)."""

    def __init__(self, result: GateResult, headline: str | None = None) -> None:
        super().__init__("\n".join(filter(None, [headline, result.summary()])))
        self.result = result


def detections_suite() -> gx.ExpectationSuite:
    """Expectations on a detect manifest (one row per detected face; boxes and landmarks in
    pixels of the original photo, origin top-left)."""
    # A GE condition object, not a Python test: string conditions with condition_parser="pandas"
    # are deprecated since GX 1.9 (and warn on every expectation built).
    subject_rows = Column("subject") == True  # noqa: E712
    expectations = [
        E.ExpectTableColumnsToMatchSet(column_set=DETECTION_COLUMNS, exact_match=False),
        # A set whose every photo was rejected (or held no face) is unusable, whatever it is for.
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToNotBeNull(column="path"),
        E.ExpectCompoundColumnsToBeUnique(column_list=["path", "face"]),
        # One subject per photo: several faces of a photo share its path, subjects may not.
        E.ExpectColumnValuesToBeUnique(column="path", row_condition=subject_rows),
        E.ExpectColumnValuesToNotBeNull(column="identity"),
        E.ExpectColumnValuesToMatchRegex(column="identity", regex=r"\S"),
        E.ExpectColumnValuesToNotBeNull(column="score"),
        E.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1),
    ]
    # 0 <= x1 < x2 <= width, same for y. A NaN coordinate fails the pair expectations
    # (a comparison with NaN is false), so no separate not-null checks are needed.
    for axis, size in (("x", "width"), ("y", "height")):
        low, high = f"{axis}1", f"{axis}2"
        expectations += [
            E.ExpectColumnValuesToBeBetween(column=low, min_value=0),
            E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=high, column_B=low),
            E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=size, column_B=high, or_equal=True),
        ]
    # Landmarks are checked as positions within their box (0 = left/top edge, 1 = right/bottom):
    # MTCNN legitimately puts a profile face's nose or mouth corner up to ~15 % of the box
    # outside it, while swapped axes, a wrong scale or another face's landmarks land far
    # outside. Pair expectations cannot express a margin, hence the derived columns.
    for column in LANDMARK_COLUMNS:
        expectations += [
            E.ExpectColumnValuesToNotBeNull(column=column),
            E.ExpectColumnValuesToBeBetween(column=f"{column}_in_box", min_value=-LANDMARK_MARGIN,
                                            max_value=1 + LANDMARK_MARGIN),
        ]
    return gx.ExpectationSuite(name="detections", expectations=expectations)


def with_landmarks_in_box(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest plus ``lm{i}_{x,y}_in_box``: each landmark's position as a fraction of its
    box's width or height from the box's left or top edge."""
    if not set(LANDMARK_COLUMNS + ["x1", "y1", "x2", "y2"]) <= set(manifest.columns):
        return manifest  # the column-set expectation names what is missing
    relative = {}
    for column in LANDMARK_COLUMNS:
        axis = column[-1]
        low, high = manifest[f"{axis}1"], manifest[f"{axis}2"]
        relative[f"{column}_in_box"] = (manifest[column] - low) / (high - low)
    return manifest.assign(**relative)


def identity_counts_suite(min_images_per_identity: int) -> gx.ExpectationSuite:
    """Expectations on the per-identity image counts (columns ``identity``, ``images``)."""
    return gx.ExpectationSuite(name="identities", expectations=[
        E.ExpectColumnValuesToBeBetween(column="images", min_value=min_images_per_identity),
    ])


def aligned_suite(min_pixel_std: float) -> gx.ExpectationSuite:
    """Expectations on per-crop statistics (see ``crop_stats``)."""
    return gx.ExpectationSuite(name="aligned", expectations=[
        E.ExpectColumnValuesToBeUnique(column="path"),
        E.ExpectColumnValuesToBeInSet(column="readable", value_set=[True]),
        # An unreadable crop has no size or pixels (null), which these skip: it fails
        # the readable expectation only.
        E.ExpectColumnValuesToBeInSet(column="height", value_set=[CROP_SIZE]),
        E.ExpectColumnValuesToBeInSet(column="width", value_set=[CROP_SIZE]),
        E.ExpectColumnValuesToBeInSet(column="channels", value_set=[3]),
        E.ExpectColumnValuesToBeBetween(column="pixel_std", min_value=min_pixel_std, strict_min=True),
    ])


def validate_detections(manifest: pd.DataFrame, name: str,
                        min_images_per_identity: int | None = None) -> GateResult:
    """Validate a detect manifest; with ``min_images_per_identity`` (a training set), also
    require that many subject faces per identity."""
    parts = [("rows", with_landmarks_in_box(manifest), detections_suite(), "path")]
    if min_images_per_identity is not None:
        # GE has no "each value occurs at least N times" expectation (value-count ones
        # look at the whole column's distribution), so the counts become a small frame
        # with one row per identity, which a row-wise expectation can name.
        subjects = manifest.loc[manifest["subject"].eq(True), "identity"]
        counts = subjects.value_counts().rename_axis("identity").reset_index(name="images")
        parts.append(("identities", counts, identity_counts_suite(min_images_per_identity), "identity"))
    return _run_gate(name, parts)


def validate_aligned(aligned_dir: Path, manifest: pd.DataFrame, name: str,
                     min_pixel_std: float = 2.0) -> GateResult:
    """Validate the aligned crops a manifest lists (``path`` relative to ``aligned_dir``):
    each a readable 112×112 3-channel JPEG whose pixel standard deviation (0–255 scale)
    exceeds ``min_pixel_std``, each path listed once."""
    crops = crop_table(aligned_dir)
    # A crop missing from the folder is an unreadable one: the gate names it.
    stats = crop_stats([crops.get(path, b"") for path in manifest["path"]], manifest["path"])
    return _run_gate(name, [("crops", stats, aligned_suite(min_pixel_std), "path")])


def crop_stats(jpegs: list[bytes], paths: pd.Series) -> pd.DataFrame:
    """One row per path: ``readable`` (bool), ``height``, ``width``, ``channels`` and
    ``pixel_std`` (over all pixels and channels, 0–255) of its crop ``jpegs[i]``; the last four
    are null where the bytes could not be decoded as a JPEG. Decodes one crop at a time."""
    rows = []
    for path, jpeg in zip(paths, jpegs):
        row = {"path": path, "readable": False, "height": None, "width": None, "channels": None,
               "pixel_std": None}
        try:
            with Image.open(io.BytesIO(jpeg), formats=["JPEG"]) as image:
                pixels = np.asarray(image)
            row.update(readable=True, height=pixels.shape[0], width=pixels.shape[1],
                       channels=1 if pixels.ndim == 2 else pixels.shape[2],
                       pixel_std=float(pixels.std()))
        except Exception:  # noqa: BLE001  (missing, not a JPEG, truncated: all are "unreadable")
            pass
        rows.append(row)
    columns = ["path", "readable", "height", "width", "channels", "pixel_std"]
    return pd.DataFrame(rows, columns=columns).astype({"readable": "bool", "height": "Int64", "width": "Int64",
                                                       "channels": "Int64", "pixel_std": "float64"})


def _run_gate(name: str, parts: list[tuple[str, pd.DataFrame, gx.ExpectationSuite, str]]) -> GateResult:
    """Validate each (part name, frame, suite, id column) and merge the outcomes."""
    raw, failures = {}, []
    totals = {"evaluated_expectations": 0, "successful_expectations": 0, "unsuccessful_expectations": 0}
    for part, frame, suite, id_column in parts:
        raw[part] = _validate(frame, suite, id_column)
        failures += _failures(raw[part], id_column)
        for key in totals:
            totals[key] += raw[part]["statistics"][key]
    return GateResult(name=name, success=all(result["success"] for result in raw.values()),
                      failures=failures, statistics=totals, raw=raw)


def _validate(frame: pd.DataFrame, suite: gx.ExpectationSuite, id_column: str) -> dict:
    """GE's validation result of ``frame`` against ``suite``, as a JSON-serialisable dict."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (context.data_sources.add_pandas("gate").add_dataframe_asset("frame")
             .add_batch_definition_whole_dataframe("whole")
             .get_batch(batch_parameters={"dataframe": frame}))
    result = batch.validate(suite, result_format={
        "result_format": "SUMMARY",
        "unexpected_index_column_names": [id_column],
        "partial_unexpected_count": EXAMPLES,
    })
    raw = result.to_json_dict()
    # When GE loaded the batch: the one field that differs between runs on the same data.
    raw["meta"].get("batch_markers", {}).pop("ge_load_time", None)
    return raw


def _failures(raw: dict, id_column: str) -> list[dict]:
    failures = []
    for outcome in raw["results"]:
        if outcome["success"]:
            continue
        result = outcome["result"]
        error = _exception_message(outcome["exception_info"])
        if error:
            examples = [error]
        elif "partial_unexpected_index_list" in result:
            # Dict order keeps the first occurrence: a duplicated path is one example.
            examples = list(dict.fromkeys(row[id_column] for row in result["partial_unexpected_index_list"]))
        else:
            examples = [result.get("details", result.get("observed_value"))]
        failures.append({"expectation": _describe(outcome["expectation_config"]),
                         "unexpected_count": int(result.get("unexpected_count", 0)),
                         "examples": examples})
    return failures


def _exception_message(info: dict) -> str | None:
    """The error GE caught while evaluating an expectation, if any. GE nests the info per
    metric when several metrics were computed."""
    infos = [info] if "raised_exception" in info else list(info.values())
    messages = [item["exception_message"] for item in infos if item.get("raised_exception")]
    return "; ".join(messages) or None


def _describe(config: dict) -> str:
    """``expect_x(column=..., ...)`` from a result's expectation config, without GE's batch id."""
    arguments = []
    for key, value in config["kwargs"].items():
        if key == "batch_id":
            continue
        if key == "row_condition":
            value = repr(deserialize_row_condition(value))
        arguments.append(f"{key}={value}")
    return f"{config['type']}({', '.join(arguments)})"
