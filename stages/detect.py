"""DVC stage detect@<set>: faces and 5 landmarks for every photo of one data set."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("set", {}), ("--out", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    summary = steps.detect(params.data.sets[args.set], args.out, params.detect)
    steps.write_metrics(args.metrics, summary)


if __name__ == "__main__":  # the worker processes re-import this file
    main()
