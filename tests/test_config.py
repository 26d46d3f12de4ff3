"""params.yaml is validated before any work, and errors name the offending key."""

from __future__ import annotations

import re
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
    assert params.data.train_set in params.data.sets
    assert {spec.photos for spec in params.evaluate.sets.values()} <= set(params.data.sets)
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
    raw["compute"]["workers"] = 0
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    assert "train.epochs" in str(error.value) and "'many'" in str(error.value)
    assert "compute.workers" in str(error.value)


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
    ({"arch": "resnet9000", "path": "x.pt"}, "unknown arch 'resnet9000'"),
    ({"arch": "iresnet100"}, "iresnet100 needs the path of its checkpoint file"),
    ({"arch": "dlib_resnet_v1", "path": "x.dat"}, "weights ship in its package: give no path"),
])
def test_a_bad_zoo_entry_is_named(entry, message):
    raw = _default_params()
    raw["zoo"] = {"x": entry}
    with pytest.raises(ConfigError, match=rf"zoo\.x.*{message}"):
        parse_params(raw)


def test_zoo_names_are_file_names_distinct_from_our_model():
    raw = _default_params()
    raw["zoo"] = {"a-b": {"arch": "dlib_resnet_v1"}}
    with pytest.raises(ConfigError, match="'a-b': names of sets and models become file and stage names"):
        parse_params(raw)
    raw["zoo"] = {raw["train"]["model_name"]: {"arch": "dlib_resnet_v1"}}
    with pytest.raises(ConfigError, match="is train.model_name"):
        parse_params(raw)
    raw["zoo"] = {"mine": {"arch": "dlib_resnet_v1"}, "sface_2021dec": {"arch": "sface_2021dec"}}
    assert parse_params(raw).zoo["mine"].name == "mine"


@pytest.mark.parametrize(("train", "message"), [
    ({"init_from": "nobody"}, "train.init_from: 'nobody' is not one of zoo"),
    ({"teacher": "nobody"}, "train.teacher: 'nobody' is not one of zoo"),
    ({"init_from": "sface_2021dec", "backbone": "mobilefacenet"},
     "sface_2021dec's weights are a sface's, not train.backbone's"),
    ({"init_from": "dlib_resnet_v1"}, "dlib_resnet_v1's weights are a dlib_resnet_v1's"),
    ({"init_from": None, "epochs": 0}, "epochs: 0 trains nothing: it needs init_from"),
    ({"distill": {"margin_weight": 0}}, "margin_weight: 0 leaves no loss without a teacher"),
    ({"teacher": "dlib_resnet_v1", "distill": {"margin_weight": 0}, "finetune": {"frozen_epochs": 1}},
     "frozen_epochs trains the head alone"),
])
def test_transfer_settings_that_cannot_work_are_refused_with_the_key(train, message):
    raw = _default_params()
    raw["train"].update(train)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_params(raw)


def test_a_photo_set_takes_its_own_detect_options_over_the_section():
    raw = _default_params()
    raw["data"]["sets"]["crops"] = {"images": "photos/crops", "detect": {"whole_image_fallback": True,
                                                                        "min_face_size": 20}}
    params = parse_params(raw)
    assert params.detect_params("crops").whole_image_fallback and params.detect_params("crops").min_face_size == 20
    assert params.detect_params("lfw") == params.detect
    for options, message in [({"min_face_sise": 20}, "min_face_sise: Extra inputs"),
                             ({"min_score": 2}, "min_score: Input should be less than or equal to 1"),
                             ({"batch_size": 1}, "batch_size only change speed")]:
        raw["data"]["sets"]["crops"]["detect"] = options
        with pytest.raises(ConfigError, match=rf"data\.sets\.crops\.detect: .*{message}"):
            parse_params(raw)
    raw["data"]["sets"]["crops"] = "photos/crops"
    with pytest.raises(ConfigError, match=r"data\.sets\.crops: .*give the set as \{images: photos/crops\}"):
        parse_params(raw)


@pytest.mark.parametrize(("spec", "message"), [
    ({"kind": "identities", "photos": "holiday"}, "photos: 'holiday' is not one of data.sets"),
    ({"kind": "identities", "photos": "lfw", "people": "heldout"}, "people: heldout needs photos: train"),
    ({"kind": "lfw", "photos": "lfw"}, r"mine\.lfw\.pairs: Field required"),
    ({"kind": "lfw", "photos": "lfw", "pairs": "p.txt", "view1_pairs": ["a.txt"]}, "give both files"),
    ({"kind": "bin"}, r"mine\.bin\.path: Field required"),
    ({"kind": "megaface", "path": "x"}, "does not match any of the expected tags: 'lfw', 'identities', 'bin'"),
])
def test_a_bad_evaluation_set_is_named(spec, message):
    raw = _default_params()
    raw["evaluate"]["sets"]["mine"] = spec
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)
