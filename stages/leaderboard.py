"""DVC stage leaderboard: metrics/leaderboard.{json,md,png,html} and roc_all_models.csv from the per-model files."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--evaluations", {"type": Path, "nargs": "+", "required": True}),
                                   ("--benchmarks", {"type": Path, "nargs": "+", "required": True}),
                                   ("--rocs", {"type": Path, "nargs": "+", "required": True}),
                                   ("--zoo-reports", {"type": Path, "nargs": "*", "default": []}),
                                   ("--out", {"type": Path, "required": True})])
    steps.leaderboard(args.evaluations, args.benchmarks, args.rocs, args.zoo_reports, args.out, params.leaderboard.sort_by)


if __name__ == "__main__":
    main()
