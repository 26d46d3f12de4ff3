"""One training attempt, scored on every evaluation set: the tool behind the attempts table in
docs/training.md.

Trains with ``params.yaml``'s ``train`` section changed by ``--set key=value`` (dotted keys,
YAML values), on the aligned training set the pipeline already produced (less the people
held out for evaluation; started from ``train.init_from`` and taught by ``train.teacher``,
whose embeddings the teacher stage wrote to data/teacher), then scores the checkpoint on each evaluation set folder the
evalset stage wrote, exactly as the evaluate stage does, and appends one row (the changes,
LFW accuracy, the held-out figures, validation score, train seconds) to ``--table``.

    python benchmarks/train_accuracy.py --set backbone=iresnet18 --set stem_stride=2 \\
        --set epochs=12 --table benchmarks/results/train_accuracy.tsv
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from facerec.config import load_params, parse_params
from facerec.evaluation.sets import read_evaluation_set
from facerec.models.zoo import ModelRef
from facerec.pipeline.evaluate import evaluate
from facerec.pipeline.teacher import read_teacher
from facerec.pipeline.train import train
from facerec.training.transfer import initial_weights


def with_changes(raw: dict, changes: list[str]) -> dict:
    """``raw`` with each ``dotted.key=yaml`` of ``changes`` applied under ``train``."""
    for change in changes:
        key, _, value = change.partition("=")
        *parents, leaf = key.split(".")
        section = raw["train"]
        for parent in parents:
            section = section.setdefault(parent, {})
        section[leaf] = yaml.safe_load(value)
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--table", type=Path, default=Path("benchmarks/results/train_accuracy.tsv"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    params_path = Path(args.params)
    raw = yaml.safe_load(params_path.read_text())
    params = parse_params(with_changes(raw, args.changes), str(params_path))
    base = load_params(params_path)
    aligned = Path("data/aligned") / params.data.train_set
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        started = time.perf_counter()
        result = train(aligned, work / "model.pt", work / "history.csv", params.train,
                       params.data.holdout_identities, initial_weights(params),
                       read_teacher(Path("data/teacher"), params.train.teacher))
        summary = result.summary
        train_seconds = time.perf_counter() - started
        model = ModelRef("attempt", None, work / "model.pt")
        scored = {name: evaluate(model, read_evaluation_set(Path("data/evalsets") / name), base.evaluate,
                                 base.compute)[0]
                  for name in base.evaluate.sets}
    row = {"changes": " ".join(args.changes) or "(params.yaml)"}
    for name, figures in scored.items():
        for key in ("lfw_accuracy", "bin_accuracy", "roc_auc", "tar_at_far_1e-3", "rank1", "fnir_at_fpir_1e-2"):
            if key in figures:
                row[f"{name}_{key}"] = figures[key]
    row.update({
        "validation": summary.get(f"validation_{params.train.validation_metric}"),
        "steps": summary["steps"],
        "best_step": summary.get("best_step"),
        "train_minutes": round(train_seconds / 60, 1),
        "samples_per_second": result.timings["samples_per_second"],
    })
    print(json.dumps(row))
    args.table.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([row]).to_csv(args.table, sep="\t", index=False, mode="a", header=not args.table.exists())


if __name__ == "__main__":
    main()
