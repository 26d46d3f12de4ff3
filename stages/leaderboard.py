"""DVC stage leaderboard: metrics/leaderboard.{json,md,png} from the per-model metrics files."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--evaluations", {"type": Path, "required": True}),
                                   ("--benchmarks", {"type": Path, "required": True}),
                                   ("--out", {"type": Path, "required": True})])
    steps.leaderboard(args.evaluations, args.benchmarks, args.out, params.leaderboard.sort_by)


if __name__ == "__main__":
    main()
