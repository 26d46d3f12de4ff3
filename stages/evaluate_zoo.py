"""DVC stage evaluate_zoo: LFW metrics of every zoo entry (params.yaml ``zoo``) that can run here."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--detections", {"type": Path, "required": True}),
                                   ("--aligned", {"type": Path, "required": True}),
                                   ("--out", {"type": Path, "required": True}),
                                   ("--roc", {"type": Path, "required": True}),
                                   ("--report", {"type": Path, "required": True})])
    steps.evaluate_zoo(params.zoo, params.data.sets[params.data.eval_set], args.detections, args.aligned,
                       params.data.lfw_pairs, args.out, args.roc, args.report, params.evaluate, params.detect,
                       params.data.lfw_view1_pairs)


if __name__ == "__main__":
    main()
