"""DVC stage align@<set>: 112×112 ArcFace crops of every detected subject face."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("set", {}), ("--detections", {"type": Path, "required": True}),
                                   ("--out", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    summary = steps.align(params.data.sets[args.set], args.detections, args.out, params.align, params.detect)
    steps.write_metrics(args.metrics, summary)


if __name__ == "__main__":
    main()
