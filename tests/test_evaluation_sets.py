"""Evaluation sets on the small real project: every model on every set from one folder per
set, people held out of training scored apart, and DVC stages fine enough that adding a set
or retraining our model reruns only what it changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from conftest import LFW, run
from facerec.data.aligned import crop_table, read_aligned_manifest
from facerec.data.digests import file_digest
from facerec.data.people import heldout_people
from facerec.evaluation.sets import read_evaluation_set
from facerec.registry import PEERS


def _params(project: Path) -> dict:
    return yaml.safe_load((project / "params.yaml").read_text())


def test_the_heldout_set_scores_people_that_training_never_saw(small_project):
    params = _params(small_project)
    evaluation = read_evaluation_set(small_project / "data" / "evalsets" / "celeba_heldout")
    aligned = read_aligned_manifest(small_project / "data" / "aligned" / "train")
    expected = heldout_people(aligned["identity"], params["data"]["holdout_identities"])
    assert set(evaluation.faces["identity"]) == expected and len(expected) == 3
    assert len(evaluation.faces) == aligned["identity"].isin(expected).sum() and evaluation.pairs.empty
    summary = json.loads((small_project / "metrics" / "train" / "summary.json").read_text())
    people = aligned["identity"].nunique()
    assert summary["identities"] == people - 3 - params["train"]["validation_identities"]
    figures = json.loads((small_project / "metrics" / "evaluate" / "celeba_heldout" /
                          f"{params['train']['model_name']}.json").read_text())
    assert figures["kind"] == "identities" and figures["faces"] == len(evaluation.faces)
    assert figures["nonmated_probe_faces"] > 0 and figures["mated_probe_faces"] > 0
    assert 0 <= figures["fnir_at_fpir_1e-1"] <= figures["fnir_at_fpir_1e-2"] <= 1
    assert 0 < figures["rank1"] <= figures["rank5"] <= 1


def test_an_evaluation_set_folder_holds_the_crops_detections_and_photo_digests(small_project):
    evaluation = read_evaluation_set(small_project / "data" / "evalsets" / "lfw")
    aligned = read_aligned_manifest(small_project / "data" / "aligned" / "lfw").set_index("source")
    faces = evaluation.faces
    assert faces["source"].is_monotonic_increasing and faces["source"].is_unique
    crops = crop_table(small_project / "data" / "aligned" / "lfw")
    for row in faces.head(5).itertuples():
        assert row.jpeg == crops[aligned.loc[row.source, "path"]]
        assert row.photo_digest == file_digest(Path(evaluation.info["photos"]) / row.source)
    protocols = evaluation.pairs["protocol"].value_counts().to_dict()
    assert protocols == {"view2": 240, "view1_train": 12, "view1_test": 12}
    named = set(evaluation.pairs["path1"]) | set(evaluation.pairs["path2"])
    assert set(faces["source"]) == named & set(aligned.index)
    assert evaluation.crops().shape == (len(faces), 3, 112, 112)


def test_every_model_is_scored_on_every_set_from_the_same_faces(small_project):
    params = _params(small_project)
    models = [params["train"]["model_name"], *params["zoo"]]
    for name in params["evaluate"]["sets"]:
        folder = small_project / "metrics" / "evaluate" / name
        assert sorted(path.stem for path in folder.glob("*.json")) == sorted(models)
        ran = {model: json.loads((folder / f"{model}.json").read_text()) for model in models}
        scored = {model: figures for model, figures in ran.items() if "skipped" not in figures}
        assert set(scored) == {params["train"]["model_name"], *PEERS.names}  # the checkpoints were not downloaded
        assert len({figures["faces"] for figures in scored.values()}) == 1
        for model, figures in ran.items():
            assert figures["kind"] == params["evaluate"]["sets"][name]["kind"]
            roc = pd.read_csv(small_project / "metrics" / "roc" / name / f"{model}.csv")
            assert roc.empty == (model not in scored)


def _stale_stages(project: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], project).stdout))


def test_adding_a_set_or_retraining_reruns_only_the_stages_they_change(project_copy):
    assert _stale_stages(project_copy) == set()
    params = _params(project_copy)
    params["evaluate"]["sets"]["lfw_people"] = {"kind": "identities", "photos": "lfw"}
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    zoo = params["zoo"]
    assert _stale_stages(project_copy) == {"evalset@lfw_people", "evaluate@lfw_people", "leaderboard",
                                           *(f"evaluate_zoo@{model}-lfw_people" for model in zoo)}
    before = _stale_stages(project_copy)
    params["train"]["lr"] = params["train"]["lr"] / 2  # retraining: only the stages that read train
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # (what then reruns downstream of the new model.pt, and that no zoo stage does, is checked
    # by running it in test_pipeline.py's branch test)
    assert _stale_stages(project_copy) - before == {"train", "tune"}


def _tight_grey_crops(folder: Path) -> list[str]:
    """Grey crops of LFW photos cut inside the face (brows to chin), the way some face
    databases ship them: too tight for the detector to find a face in some of them."""
    names = []
    for photo in sorted((LFW / "images").glob("A*/*_0001.jpg"))[:6]:
        person = folder / photo.parent.name
        person.mkdir(parents=True, exist_ok=True)
        Image.open(photo).convert("L").crop((85, 85, 165, 175)).resize((96, 108)).save(person / "face.pgm")
        names.append(f"{photo.parent.name}/face.pgm")
    return names


def test_a_set_of_tight_crops_takes_its_own_detect_options(tmp_path):
    from facerec.config import ComputeParams
    from facerec.pipeline.common import set_detect_params
    from facerec.pipeline.detect import detect

    names = _tight_grey_crops(tmp_path / "crops")
    params = _params(Path(__file__).resolve().parents[1])
    params["data"]["sets"]["crops"] = {"images": str(tmp_path / "crops"), "detect": {"whole_image_fallback": True}}
    params["detect"]["cache"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert not set_detect_params(tmp_path / "params.yaml", "lfw").whole_image_fallback
    own = detect(tmp_path / "crops", tmp_path / "own", set_detect_params(tmp_path / "params.yaml", "crops"),
                 ComputeParams())
    assert sorted(own.manifest.loc[own.manifest["subject"], "path"]) == sorted(names) and own.rejects.empty
    fallback = own.manifest[own.manifest["subject"] & own.manifest["whole_image"]]
    assert len(fallback) >= 1, "every tight crop had a face found: the test needs tighter crops"
    assert np.allclose(fallback[["x1", "y1", "x2", "y2"]].to_numpy(), [0, 0, 96, 108])
    section = detect(tmp_path / "crops", tmp_path / "section", set_detect_params(tmp_path / "params.yaml", None),
                     ComputeParams())
    assert sorted(section.rejects["path"]) == sorted(fallback["path"])
    assert set(section.rejects["reason"].str.split(":").str[0]) == {"no face found"}


@pytest.mark.parametrize("model", ["dlib_resnet_v1", "facerec_sface_adapted"])
def test_evaluate_folder_scores_any_model_by_its_name(small_project, model, tmp_path):
    images = _params(small_project)["data"]["sets"]["lfw"]["images"]
    result = run(["facerec", "evaluate-folder", "--model", model, "--aligned", "data/aligned/lfw",
                  "--detections", "data/detections/lfw", "--images", images, "--roc", str(tmp_path / "roc.csv")],
                 small_project)
    figures = json.loads(result.stdout)
    assert figures["kind"] == "identities" and figures["faces"] == len(read_aligned_manifest(
        small_project / "data" / "aligned" / "lfw"))
    assert {"rank1", "rank5", "tar_at_far_1e-3", "fnir_at_fpir_1e-2"} <= figures.keys()
    assert len(pd.read_csv(tmp_path / "roc.csv")) > 100


def test_an_identity_set_with_its_own_pairs_file_scores_it_ten_fold(small_project, tmp_path):
    """LFW's View 2 pairs written as a .csv pairs table of the LFW photo set as an identity
    set: its pairs_accuracy is the LFW stage's View 2 accuracy."""
    from facerec.config import ComputeParams, DetectParams, EvaluateParams, IdentitiesSet
    from facerec.data.lfw import read_pairs, read_pairs_table
    from facerec.evaluation.sets import build_evaluation_set
    from facerec.models.zoo import ModelRef
    from facerec.pipeline.evaluate import evaluate

    params = _params(small_project)
    model = params["train"]["model_name"]
    pairs = read_pairs(params["evaluate"]["sets"]["lfw"]["pairs"])
    pairs.assign(genuine=pairs["genuine"].map({True: "true", False: "false"})).to_csv(tmp_path / "pairs.csv",
                                                                                      index=False)
    assert read_pairs_table(tmp_path / "pairs.csv").equals(pairs)
    spec = IdentitiesSet(kind="identities", photos="lfw", pairs=tmp_path / "pairs.csv")
    data = small_project / "data"
    evaluation = build_evaluation_set("lfw_people", spec, Path(params["data"]["sets"]["lfw"]["images"]),
                                      data / "detections" / "lfw", data / "aligned" / "lfw", DetectParams())
    figures, _ = evaluate(ModelRef(model, None, small_project / "models" / model / "model.pt"), evaluation,
                          EvaluateParams(**params["evaluate"]), ComputeParams())
    stage = json.loads((small_project / "metrics" / "evaluate" / "lfw" / f"{model}.json").read_text())
    assert figures["pairs_scored"] == stage["lfw_pairs_scored"] and figures["pairs_missing"] == 0
    assert figures["pairs_accuracy"] == pytest.approx(stage["lfw_accuracy"], abs=1e-12)
    assert figures["faces"] == len(read_aligned_manifest(data / "aligned" / "lfw"))

    pd.DataFrame({"path1": ["a"], "path2": ["b"], "same": [1]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad\.csv: a pairs table needs columns path1, path2, genuine; "
                                         r"missing genuine"):
        read_pairs_table(tmp_path / "bad.csv")
