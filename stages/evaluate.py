"""DVC stage evaluate: LFW View 2 (and View 1) accuracy, ROC, EER, TAR@FAR and Rank-k of one model."""

from pathlib import Path

from _common import start

from facerec import steps


def main() -> None:
    args, params = start(__doc__, [("--checkpoint", {"type": Path, "required": True}),
                                   ("--aligned", {"type": Path, "required": True}),
                                   ("--roc", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    metrics = steps.evaluate(args.checkpoint, None, args.aligned, params.data.lfw_pairs, args.roc,
                             params.evaluate, params.data.lfw_view1_pairs)
    steps.write_metrics(args.metrics, metrics)


if __name__ == "__main__":
    main()
