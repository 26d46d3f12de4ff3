"""params.yaml is validated before any work, and errors name the offending key."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from conftest import CELEBA, PROJECT_ROOT
from facerec.config import AUGMENTATION_PRESETS, ConfigError, load_params, parse_params


def _default_params() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


def test_the_committed_params_are_valid():
    params = load_params(PROJECT_ROOT / "params.yaml")
    assert set(params.data.sets) >= {params.data.train_set, params.data.eval_set}
    # params.yaml ships the presets docs/training.md describes (the code's defaults).
    assert params.train.augmentations == AUGMENTATION_PRESETS
    assert params.train.augmentation in params.train.augmentations


def test_an_unknown_key_is_named():
    raw = _default_params()
    raw["train"]["head"]["margn"] = 0.4
    with pytest.raises(ConfigError, match=r"train\.head\.margn: unknown key"):
        parse_params(raw)


def test_a_wrong_type_is_named_with_the_value():
    raw = _default_params()
    raw["train"]["epochs"] = "many"
    raw["detect"]["workers"] = 0
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    assert "train.epochs" in str(error.value) and "'many'" in str(error.value)
    assert "detect.workers" in str(error.value)


def test_an_unknown_section_is_named():
    raw = _default_params()
    raw["evalute"] = {"flip": False}
    with pytest.raises(ConfigError, match="evalute: unknown key"):
        parse_params(raw)


def test_a_stage_stops_before_any_work_on_a_bad_key(tmp_path):
    raw = _default_params()
    raw["detect"]["min_face_sise"] = 30
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "stages" / "detect.py"), "--images", str(CELEBA),
         "--out", "out", "--metrics", "m.json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "detect.min_face_sise: unknown key" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x", "arch": "resnet9000", "path": "x.pt"}, "unknown arch 'resnet9000'"),
    ({"name": "x", "arch": "iresnet100"}, "iresnet100 needs the path of its checkpoint file"),
    ({"name": "x", "arch": "dlib_resnet_v1", "path": "x.dat"}, "weights ship in its package: give no path"),
    ({"name": "a b", "arch": "dlib_resnet_v1"}, r"zoo\.0\.name"),
])
def test_a_bad_zoo_entry_is_named(entry, message):
    raw = _default_params()
    raw["zoo"] = [entry]
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)


def test_zoo_names_must_be_distinct_and_differ_from_our_model():
    raw = _default_params()
    raw["zoo"] = [{"name": "same", "arch": "dlib_resnet_v1"}, {"name": "same", "arch": "facenet_20180408"}]
    with pytest.raises(ConfigError, match="zoo names must be distinct: same repeated"):
        parse_params(raw)
    raw["zoo"] = [{"name": raw["train"]["model_name"], "arch": "dlib_resnet_v1"}]
    with pytest.raises(ConfigError, match="is train.model_name"):
        parse_params(raw)
