"""Optuna search of the margin head's hyperparameters on short trainings.

Each trial trains ``train`` with the suggested values for ``tune.epochs`` on a seeded sample
of the training people and is scored, after every epoch, by the verification metric on the
people held out of its training (``train.validation_metric``, never LFW); a median pruner
stops trials that trail the others at the same epoch. TPE proposes the values.

The study lives in an RDB storage (SQLite under ``models/tune/`` by default): a study killed
midway resumes where it stopped, and several workers pointed at one server database share
a study. Its name carries a fingerprint of everything that defines it, so changed params
start a new study instead of mixing trials of different searches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy.engine import make_url

from facerec.config import SearchRange, TrainParams, TuneParams
from facerec.training.loop import starting_point, train_model

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# A trial whose worker stops sending heartbeats (killed) is failed and retried once by the next worker.
HEARTBEAT_SECONDS = 60


@dataclass(frozen=True)
class SearchSpace:
    """The searched hyperparameters: Optuna's name -> (the dotted params.yaml key, its range)."""

    ranges: dict[str, tuple[str, SearchRange]]

    @classmethod
    def of(cls, train: TrainParams, tune: TuneParams) -> "SearchSpace":
        if train.head.type not in tune.heads:
            raise ValueError(f"tune.heads has no ranges for train.head.type {train.head.type!r} "
                             f"(it has: {', '.join(tune.heads) or 'none'})")
        ranges = {name: (f"train.head.{name}", bounds) for name, bounds in tune.heads[train.head.type].items()}
        for name in ("lr", "weight_decay"):
            bounds = getattr(tune, name)
            if bounds is not None:
                ranges[name] = (f"train.{name}", bounds)
        if not ranges:
            raise ValueError(f"tune.heads.{train.head.type} names no parameter to search")
        return cls(ranges)

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        return {name: trial.suggest_float(name, bounds.low, bounds.high, step=bounds.step, log=bounds.log)
                for name, (_, bounds) in self.ranges.items()}

    def trial_params(self, train: TrainParams, tune: TuneParams, values: dict[str, float]) -> TrainParams:
        """``train`` with the trial's values, trained briefly: no early stop, no resumable state,
        ``tune.seed`` (so that train.seed, like the searched values, does not change the study),
        no adaptation (a map after the backbone, fitted whatever the head: it does not steer the search)."""
        raw = train.model_dump()
        for name, value in values.items():
            section = raw["head"] if self.ranges[name][0].startswith("train.head.") else raw
            section[name] = value
        raw.update(epochs=tune.epochs, patience=0, checkpoint_every=0, seed=tune.seed, adaptation="none")
        return TrainParams.model_validate(raw)

    def dvc_overrides(self, values: dict[str, float]) -> list[str]:
        """``key=value`` for ``dvc exp run -S``, one per searched parameter."""
        return [f"{self.ranges[name][0]}={value:.6g}" for name, value in values.items()]


def sample_identities(faces: pd.DataFrame, count: int | None, seed: int) -> pd.DataFrame:
    """The faces of ``count`` people drawn with ``seed`` (all faces when ``count`` is None)."""
    people = np.sort(faces["identity"].unique())
    if count is None or count >= len(people):
        return faces
    kept = np.random.default_rng(seed).choice(people, size=count, replace=False)
    return faces[faces["identity"].isin(kept)].reset_index(drop=True)


def study_name(train: TrainParams, tune: TuneParams, space: SearchSpace, faces: pd.DataFrame) -> str:
    """``<model>-<head>-<fingerprint>``: the same search on the same faces finds its study again.

    The searched parameters' current values are left out, so training with the best values
    found (which edits them in params.yaml) finds the finished study instead of starting anew;
    n_trials, timeout and storage say how long and where, not what is searched."""
    trained = space.trial_params(train, tune, {}).model_dump(mode="json")
    for key, _ in space.ranges.values():
        section = trained["head"] if key.startswith("train.head.") else trained
        section.pop(key.rsplit(".", 1)[1])
    definition = {"train": trained,
                  "tune": tune.model_dump(mode="json", exclude={"n_trials", "timeout_minutes", "storage"}),
                  "faces": sorted(faces["path"].tolist())}
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:12]
    return f"{train.model_name}-{train.head.type}-{digest}"


def open_study(name: str, url: str, seed: int, startup_trials: int) -> optuna.Study:
    storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    study = optuna.create_study(
        study_name=name, storage=storage, direction="maximize", load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0))
    # Offset by the trials already run: a resumed study's sampler, seeded as the first run's was,
    # would otherwise propose the first run's values again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def trial_figures(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict[str, float]:
    """A finished trial's figures for a live log: its score (a pruned trial's last epoch's),
    whether it was pruned, the best complete score up to it, and the values it tried."""
    score = trial.value if trial.value is not None else trial.intermediate_values[max(trial.intermediate_values)]
    complete = [other.value for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if other.number <= trial.number and other.value is not None]
    return {"score": score, "pruned": float(trial.state == TrialState.PRUNED),
            **({"best_score": max(complete)} if complete else {}), **trial.params}


def run_study(aligned_dir: Path, faces: pd.DataFrame, train: TrainParams, tune: TuneParams,
              storage_url: str, initial_weights: dict | None = None,
              teacher: pd.DataFrame | None = None,
              on_trial: Callable[[int, dict[str, float]], None] | None = None) -> tuple[optuna.Study, SearchSpace]:
    """Run trials until the study holds ``tune.n_trials`` finished ones (or the timeout); each
    trial trains as ``train`` says, from ``initial_weights`` and with ``teacher`` when given
    (``facerec.training.loop.train_model``). ``on_trial(number, trial_figures)`` (DVCLive's
    log) gets each finished trial: those the study held already, then each as it ends."""
    if not train.validation_identities:
        raise ValueError("tuning scores trials on held-out people: set train.validation_identities above 0")
    space = SearchSpace.of(train, tune)
    faces = sample_identities(faces, tune.identities, tune.seed)
    study = open_study(study_name(train, tune, space, faces), storage_url, tune.seed, tune.pruner_startup_trials)
    remaining = tune.n_trials - finished_trials(study)
    log.info("study %s in %s: %d of %d trials finished; searching %s", study.study_name,
             redact(storage_url), tune.n_trials - max(remaining, 0), tune.n_trials, ", ".join(space.ranges))
    # Every trial starts from the same weights on the same faces: the imprinted head and the
    # started-from weights' validation are the same in each, so they are computed once here.
    start = (starting_point(aligned_dir, faces, space.trial_params(train, tune, {}), initial_weights)
             if initial_weights is not None and remaining > 0 else None)

    def objective(trial: optuna.Trial) -> float:
        values = space.suggest(trial)
        log.info("trial %d: %s", trial.number, ", ".join(space.dvc_overrides(values)))
        started = time.perf_counter()

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                log.info("trial %d pruned after epoch %d (score %.4f)", trial.number, epoch + 1, score)
                raise optuna.TrialPruned()

        try:
            result = train_model(aligned_dir, faces, space.trial_params(train, tune, values), None,
                                 on_validation=report, initial_weights=initial_weights, teacher=teacher,
                                 start=start)
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        return trial_score(result.validation)

    def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if on_trial is not None and trial.state in FINISHED:
            on_trial(trial.number, trial_figures(study, trial))

    for trial in study.get_trials(deepcopy=False, states=FINISHED):
        finished(study, trial)
    if remaining > 0:
        # MaxTrialsCallback ends this worker once the shared study is complete, whoever ran the trials.
        study.optimize(objective, n_trials=remaining,
                       timeout=tune.timeout_minutes * 60 if tune.timeout_minutes else None,
                       callbacks=[MaxTrialsCallback(tune.n_trials, states=FINISHED), finished])
    return study, space


def trial_score(validation: pd.DataFrame) -> float:
    """A trial's objective: the best validation of its own epochs. The started-from weights'
    step-0 score is left out: it is the same in every trial, and a fine-tuning that beats it in
    no trial would tie every trial on it, leaving TPE nothing to learn from."""
    return float(validation.loc[validation["step"] > 0, "score"].max())  # tune.epochs >= 1: never empty


def redact(url: str) -> str:
    """The storage URL without its password, fit for logs and metrics files."""
    return make_url(url).render_as_string(hide_password=True)


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value (``trial_score``: its best epoch's validation), the values tried."""
    rows = [{"trial": trial.number, "state": trial.state.name, "value": trial.value, **trial.params}
            for trial in study.trials]
    return pd.DataFrame(rows, columns=["trial", "state", "value", *_param_names(study)])


def trial_seconds(study: optuna.Study) -> dict[str, float | None]:
    """How long each trial trained, by trial number (timings vary run to run: kept apart)."""
    return {str(trial.number): trial.user_attrs.get("seconds") for trial in study.trials}


def _param_names(study: optuna.Study) -> list[str]:
    return list(dict.fromkeys(name for trial in study.trials for name in trial.params))


def summary(study: optuna.Study, space: SearchSpace, metric: str, storage_url: str) -> dict:
    """What metrics/tune.json holds: the best values, how the trials ended, how to train with the best."""
    counts = {state: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    result = {"study": study.study_name, "storage": redact(storage_url), "metric": f"validation_{metric}",
              "trials": len(study.trials), "complete": counts[TrialState.COMPLETE],
              "pruned": counts[TrialState.PRUNED], "failed": counts[TrialState.FAIL]}
    if counts[TrialState.COMPLETE]:
        best = study.best_trial
        overrides = space.dvc_overrides(best.params)
        result.update(best_value=best.value, best_trial=best.number,
                      best_params={key: float(value) for key, value in (item.split("=") for item in overrides)},
                      train_with_best="dvc exp run " + " ".join(f"-S {item}" for item in overrides))
    return result
