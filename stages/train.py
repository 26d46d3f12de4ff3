"""DVC stage train: a backbone with an ArcFace head on the aligned training set."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--aligned", {"type": Path, "required": True}),
                                   ("--checkpoint", {"type": Path, "required": True}),
                                   ("--history", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    summary = steps.train(args.aligned, args.checkpoint, args.history, params.train)
    steps.write_metrics(args.metrics, summary)


if __name__ == "__main__":
    main()
