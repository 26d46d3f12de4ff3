"""Optuna's search of the margin head: the real tune stage of the small project, a study that
resumes, and the search space as params.yaml states it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from conftest import PROJECT_ROOT, run
from facerec.config import ConfigError, load_params, parse_params
from facerec.data.people import without_heldout
from facerec.data.training_faces import training_manifest
from facerec.pipeline.tune import tune
from facerec.reports.tuning_report import write_tuning_report
from facerec.training import tuning
from facerec.training.loop import StartingPoint, starting_point, train_model
from facerec.training.transfer import initial_weights
from facerec.training.tuning import SearchSpace


def test_the_tune_stage_searches_the_heads_ranges_and_says_how_to_train_with_the_best(small_project: Path) -> None:
    params = load_params(small_project / "params.yaml")
    result = json.loads((small_project / "metrics" / "tune.json").read_text())
    ranges = params.tune.heads[params.train.head.type]

    assert result["trials"] == result["complete"] + result["pruned"] == params.tune.n_trials
    assert result["metric"] == f"validation_{params.train.validation_metric}"
    assert set(result["best_params"]) == {f"train.head.{name}" for name in ranges}
    for name, bounds in ranges.items():
        assert bounds.low <= result["best_params"][f"train.head.{name}"] <= bounds.high
    trials = pd.read_csv(small_project / "metrics" / "tune" / "trials.csv")
    assert len(trials) == params.tune.n_trials
    assert trials["value"].max() == pytest.approx(result["best_value"], abs=1e-6)
    assert result["best_value"] > 0  # held-out people are told apart better than never

    page = (small_project / "metrics" / "tune" / "report.html").read_text()
    assert "Optimisation history" in page and "Contour of margin x scale" in page and "<script src" not in page
    # The documented command sets exactly the best values, at keys params.yaml has.
    assert result["train_with_best"] == "dvc exp run " + " ".join(
        f"-S {key}={value:g}" for key, value in result["best_params"].items())
    for key in result["best_params"]:
        section = yaml.safe_load((small_project / "params.yaml").read_text())
        for part in key.split("."):
            section = section[part]
    assert "tune.json" in run(["dvc", "metrics", "show"], small_project).stdout


def test_a_study_resumes_where_it_stopped_and_runs_only_the_missing_trials(project_copy: Path,
                                                                          tmp_path: Path) -> None:
    params = load_params(project_copy / "params.yaml")
    aligned = project_copy / "data" / "aligned" / params.data.train_set
    more = params.tune.model_copy(update={"n_trials": params.tune.n_trials + 1})

    result, seconds = tune(aligned, project_copy / "models" / "tune", tmp_path / "trials.csv",
                           tmp_path / "report.html", params.train, more, params.data.holdout_identities)

    assert sorted(seconds["trial_seconds"]) == [str(trial) for trial in range(more.n_trials)]
    staged = json.loads((project_copy / "metrics" / "tune.json").read_text())
    assert result["study"] == staged["study"]  # the stage's study, found again
    trials = pd.read_csv(tmp_path / "trials.csv")
    assert len(trials) == more.n_trials and trials["state"].isin(["COMPLETE", "PRUNED"]).all()
    before = pd.read_csv(project_copy / "metrics" / "tune" / "trials.csv")
    pd.testing.assert_frame_equal(trials.iloc[:len(before)], before, check_dtype=False)
    # The resumed sampler proposes new values, not the first run's again.
    new = trials.iloc[len(before):][["margin", "scale"]].itertuples(index=False)
    assert not set(new) & set(before[["margin", "scale"]].itertuples(index=False))


def _study_faces(project: Path):
    settings = load_params(project / "params.yaml")
    aligned = project / "data" / "aligned" / settings.data.train_set
    return settings, aligned, without_heldout(training_manifest(aligned), settings.data.holdout_identities)


def test_a_trial_handed_the_studys_starting_point_trains_exactly_as_one_that_computes_it(small_project: Path) -> None:
    """The imprinted head and the step-0 validation, computed once per study, leave a trial's
    validation scores and every step's loss bit for bit as the trial computing them itself."""
    settings, aligned, faces = _study_faces(small_project)
    space = SearchSpace.of(settings.train, settings.tune)
    weights = initial_weights(settings)
    start = starting_point(aligned, faces, space.trial_params(settings.train, settings.tune, {}), weights)
    values = {name: bounds.low for name, (_, bounds) in space.ranges.items()}  # not the params' own values
    trial = space.trial_params(settings.train, settings.tune, values)
    assert trial.finetune.head_init == "class_means" and trial.finetune.frozen_epochs > 0

    alone = train_model(aligned, faces, trial, None, initial_weights=weights)
    shared = train_model(aligned, faces, trial, None, initial_weights=weights, start=start)

    pd.testing.assert_frame_equal(shared.validation, alone.validation, check_exact=True)
    pd.testing.assert_frame_equal(shared.history, alone.history, check_exact=True)
    assert len(alone.validation) == 1 + trial.epochs and alone.validation["score"].iloc[0] == start.validation
    assert start.class_means is not None and start.class_means.shape[0] == shared.summary["identities"]
    # Other faces are another start: refused rather than silently imprinting the wrong people.
    fewer = faces[faces["identity"] != faces["identity"].iloc[0]]
    with pytest.raises(ValueError, match="starting point was computed from other faces"):
        train_model(aligned, fewer, trial, None, initial_weights=weights, start=start)


def test_every_trial_of_a_study_is_handed_the_one_starting_point(small_project: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings, aligned, faces = _study_faces(small_project)
    handed: list[StartingPoint | None] = []

    def trial(*args, start: StartingPoint | None = None, **kwargs) -> SimpleNamespace:
        handed.append(start)
        return SimpleNamespace(validation=pd.DataFrame({"step": [0, 4], "score": [0.9, 0.5]}))

    monkeypatch.setattr(tuning, "train_model", trial)
    tune_params = settings.tune.model_copy(update={"n_trials": 3})
    tuning.run_study(aligned, faces, settings.train, tune_params, f"sqlite:///{tmp_path / 'study.db'}",
                     initial_weights(settings))
    assert len(handed) == 3 and handed[0] is not None and all(start is handed[0] for start in handed)


def _stage_study(project: Path) -> optuna.Study:
    """The study the project's tune stage ran (its default SQLite storage)."""
    result = json.loads((project / "metrics" / "tune.json").read_text())
    return optuna.load_study(study_name=result["study"], storage=f"sqlite:///{project / 'models/tune/study.db'}")


def test_the_tuning_report_is_written_byte_for_byte_again_from_the_same_study(small_project: Path,
                                                                              tmp_path: Path) -> None:
    """A DVC out: a rerun of the same study must not change its hash (plotly's div ids are
    random and fANOVA's forest too unless fixed)."""
    write_tuning_report(tmp_path / "again.html", _stage_study(small_project))
    assert (tmp_path / "again.html").read_bytes() == (small_project / "metrics" / "tune" / "report.html").read_bytes()


def test_a_trial_is_scored_on_its_own_epochs_not_on_the_weights_every_trial_starts_from(small_project: Path) -> None:
    """The started-from weights' step-0 validation is the same in every trial: a trial that
    never beats it still scores its own best epoch, so trials that differ get different scores."""
    complete = _stage_study(small_project).get_trials(states=(TrialState.COMPLETE,))
    assert complete
    for trial in complete:  # the scores reported after each of its epochs (what the pruner compares)
        assert trial.value == max(trial.intermediate_values.values())
    assert tuning.trial_score(pd.DataFrame({"step": [0, 3, 6], "score": [0.95, 0.80, 0.85]})) == 0.85


def test_the_search_space_follows_the_chosen_head_and_the_optional_ranges() -> None:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["train"]["head"]["type"] = "arcface"
    raw["tune"]["lr"] = {"low": 0.01, "high": 0.3, "log": True}
    params = parse_params(raw)
    space = SearchSpace.of(params.train, params.tune)
    assert set(space.ranges) == {"margin", "scale", "lr"}
    values = {"margin": 0.61, "scale": 24.0, "lr": 0.05}
    trained = space.trial_params(params.train, params.tune, values)
    assert (trained.head.margin, trained.head.scale, trained.lr) == (0.61, 24.0, 0.05)
    assert trained.epochs == params.tune.epochs and trained.seed == params.tune.seed
    assert space.dvc_overrides(values) == ["train.head.margin=0.61", "train.head.scale=24", "train.lr=0.05"]

    # params.yaml's ranges for a head replace that head's defaults, and leave the others'.
    raw["tune"]["heads"] = {"arcface": {"margin": [0.3, 0.4, 0.01]}}
    narrowed = parse_params(raw)
    assert set(SearchSpace.of(narrowed.train, narrowed.tune).ranges) == {"margin", "lr"}
    assert narrowed.tune.heads["cosface"] == params.tune.heads["cosface"]
    raw["tune"].update(heads={"arcface": {}}, lr=None)
    with pytest.raises(ValueError, match="tune.heads.arcface names no parameter to search"):
        SearchSpace.of(parse_params(raw).train, parse_params(raw).tune)


@pytest.mark.parametrize("heads, message", [
    ({"arcface": {"margn": [0.2, 0.8]}}, r"tune: .*heads.arcface: margn not head parameters"),
    ({"arcface": {"margin": [0.8, 0.2]}}, r"tune.heads.arcface.margin.*low 0.8 must be below high 0.2"),
])
def test_a_bad_search_range_is_refused_naming_the_key(heads: dict, message: str) -> None:
    raw = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    raw["tune"]["heads"] = heads
    with pytest.raises(ConfigError, match=message):
        parse_params(raw)

