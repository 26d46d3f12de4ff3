"""dvc.yaml declares what each stage really depends on: its code from its imports, its params
key by key without the speed-only settings, and only names the registries know."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from conftest import PROJECT_ROOT
from facerec import config
from facerec.pipeline.code_deps import imported_files, stage_code
from facerec.registry import BACKBONES, DETECTORS, HEADS, PEERS

DVC = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
# The sections whose stage reads (nearly) all of them: declared key by key, speed-only keys left out.
SECTION_MODELS = {"compute": config.ComputeParams, "detect": config.DetectParams, "train": config.TrainParams,
                  "tune": config.TuneParams,
                  "evaluate": config.EvaluateParams, "benchmark": config.BenchmarkParams,
                  "monitor": config.MonitorParams, "gate": config.GateParams, "align": config.AlignParams}
# Keys of a section that another stage reads instead, one entry each: every evaluation set's
# own entry is a param of its evalset stage (evaluate.sets.<set>), not of every evaluation.
READ_ELSEWHERE = {"evaluate": {"sets"}}
# Keys of a section that one of its stages never reads: tune's trials fit no adaptation
# (facerec.training.tuning.SearchSpace.trial_params sets it to none).
NOT_READ_BY_STAGE = {"tune": {"train.adaptation"}}
# compute is speed only, whole (where the work runs): the stages that run on its engine declare none of it.
SECTIONS_OF_STAGE = {"detect": ["detect", "compute"], "align": ["align"], "gate": ["gate"], "train": ["train"],
                     "tune": ["tune", "train"], "evaluate": ["evaluate", "compute"],
                     "evaluate_zoo": ["evaluate", "compute"], "teacher": ["compute"],
                     "benchmark": ["benchmark"], "benchmark_zoo": ["benchmark"], "monitor": ["monitor"]}


def _facerec(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facerec", *arguments], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_dvc_yaml_declares_exactly_the_code_each_stage_imports():
    stages = stage_code(PROJECT_ROOT)
    assert {stage.stage for stage in stages} == set(DVC)
    for stage in stages:
        assert (stage.missing, stage.unused) == ([], []), stage.stage
    result = _facerec("stage-deps", "--check", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr


def test_a_stage_that_misses_or_overdeclares_code_is_named(tmp_path):
    for name in ("facerec", "stages", "params.yaml"):
        (tmp_path / name).symlink_to(PROJECT_ROOT / name)
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())
    train_deps = stages["stages"]["train"]["deps"]
    train_deps.remove("facerec/models/heads.py")
    stages["stages"]["leaderboard"]["deps"].append("facerec/models/heads.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(stages))

    result = _facerec("stage-deps", "--check", "--root", str(tmp_path), cwd=tmp_path)

    assert result.returncode == 1
    assert "missing from dvc.yaml: facerec/models/heads.py" in result.stderr
    assert "declared but not imported: facerec/models/heads.py" in result.stderr


def test_imports_inside_functions_and_package_inits_count_as_code():
    files = imported_files(PROJECT_ROOT, Path("stages/evaluate.py"))
    # embed_evaluation_set imports the checkpoint loader and the peers inside the function.
    assert {Path("facerec/models/checkpoints.py"), Path("facerec/models/peers/load.py")} <= files
    # Python runs every package's __init__ on the way to a module.
    assert {Path("facerec/__init__.py"), Path("facerec/models/__init__.py"), Path("stages/_path.py")} <= files
    # A stage that never builds a backbone does not depend on the backbones' code.
    assert not any(str(path).startswith("facerec/models") for path in imported_files(PROJECT_ROOT,
                                                                                      Path("stages/detect.py")))


@pytest.mark.parametrize("stage", sorted(SECTIONS_OF_STAGE))
def test_params_are_declared_key_by_key_without_the_speed_only_settings(stage):
    definition = DVC[stage].get("do", DVC[stage])
    declared = {key for key in definition["params"] if isinstance(key, str)}
    for section in SECTIONS_OF_STAGE[stage]:
        neutral = set(SECTION_MODELS[section].RESULT_NEUTRAL)
        skipped = neutral | READ_ELSEWHERE.get(section, set())
        expected = {f"{section}.{key}" for key in PARAMS[section] if key not in skipped
                    } - NOT_READ_BY_STAGE.get(stage, set())
        assert {key for key in declared if key.split(".")[0] == section} == expected, section
        assert set(PARAMS[section]) >= neutral  # the speed settings stay visible in params.yaml


def _lookup(reference: str) -> dict:
    """The params.yaml mapping a ``${a.b}`` template names."""
    value = PARAMS
    for part in reference.strip("${}").split("."):
        value = value[part]
    return value


def _expanded(stage: dict) -> list[str]:
    """A stage's params with ``${key}`` (foreach) and ``${item.<axis>}`` (matrix) filled in for
    every stage DVC generates from it."""
    params = [str(key) for key in stage.get("do", stage).get("params", [])]
    if "foreach" in stage:
        return [key.replace("${key}", name) for name in _lookup(stage["foreach"]) for key in params]
    if "matrix" in stage:
        expanded = params
        for axis, reference in stage["matrix"].items():
            expanded = [key.replace(f"${{item.{axis}}}", name) for name in _lookup(reference) for key in expanded]
        return expanded
    return params


def test_every_declared_param_exists_in_params_yaml():
    for name, stage in DVC.items():
        for key in _expanded(stage):
            value = PARAMS
            for part in key.split("."):
                assert isinstance(value, dict) and part in value, f"{name}: {key}"
                value = value[part]


@pytest.mark.parametrize("registry", [BACKBONES, HEADS, DETECTORS, PEERS], ids=lambda registry: registry.kind)
def test_every_declared_name_is_registered_by_its_implementation(registry):
    for name in registry.names:
        assert callable(registry.get(name))
    with pytest.raises(ValueError, match=f"unknown {registry.kind} 'nonesuch'; known: "):
        registry.get("nonesuch")


def test_config_accepts_every_registered_backbone_head_and_detector_and_names_the_known_ones():
    for backbone in BACKBONES.names:
        assert config.TrainParams(model_name="m", epochs=1, backbone=backbone).backbone == backbone
    for head in HEADS.names:
        assert config.HeadParams(type=head).type == head
    assert config.DetectParams(backend="mtcnn").backend == "mtcnn"
    with pytest.raises(ValidationError, match="unknown backbone 'resnet9000'; known: mobilefacenet, iresnet18"):
        config.TrainParams(model_name="m", epochs=1, backbone="resnet9000")
    with pytest.raises(ValidationError, match="unknown detector 'retinaface'"):
        config.DetectParams(backend="retinaface")


def test_registering_an_undeclared_name_fails_at_once():
    with pytest.raises(ValueError, match="backbone 'resnet9000' is not declared in facerec.registry"):
        BACKBONES.register("resnet9000")(lambda **_: None)


def test_library_defaults_live_in_config_only():
    """A head, a detector and the embedding helpers take their settings from the params
    (whose defaults are facerec/config.py's), not from defaults of their own."""
    import inspect

    from facerec.evaluation.embedding import embed_crops
    from facerec.faces.detectors.mtcnn import MtcnnDetector
    from facerec.models.heads import AdaFaceHead, ArcFaceHead, CombinedMarginHead, CosFaceHead
    from facerec.models.partial_fc import PartialFC

    for function in (ArcFaceHead, CosFaceHead, AdaFaceHead, CombinedMarginHead, MtcnnDetector, PartialFC):
        defaults = [p.name for p in inspect.signature(function).parameters.values() if p.default is not p.empty]
        assert defaults == [], function
    # The embedding helpers' defaults are the training loop's way (fp32 torch, on torch's
    # threads: its model changes every epoch); the stages pass evaluate's and monitor's params.
    assert {name: p.default for name, p in inspect.signature(embed_crops).parameters.items()
            if p.default is not p.empty} == {"precision": "fp32", "runtime": "torch", "num_threads": 1}
