"""DVC stage tune: Optuna's search of the margin head (and optionally lr, weight decay).

Several workers on one study: give them the same tune.storage (an RDB URL) and start
``python stages/tune.py ...`` on each machine (see README, "Tuning")."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--aligned", {"type": Path, "required": True}),
                                   ("--storage-dir", {"type": Path, "required": True}),
                                   ("--trials", {"type": Path, "required": True}),
                                   ("--report", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    result = steps.tune(args.aligned, args.storage_dir, args.trials, args.report, params.train, params.tune)
    steps.write_metrics(args.metrics, result)


if __name__ == "__main__":
    main()
