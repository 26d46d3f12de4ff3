"""DVC stage detect_report: metrics/detect.json, every set's detection rate, speed and alignment error."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--detections", {"type": Path, "required": True}),
                                   ("--alignments", {"type": Path, "required": True}),
                                   ("--out", {"type": Path, "required": True})])
    steps.write_metrics(args.out, steps.detection_report(args.detections, args.alignments, params.detect))


if __name__ == "__main__":
    main()
