"""DVC stage train: a backbone with a margin head on the aligned training set.

Several processes: torchrun --nproc_per_node N stages/train.py ... (see docs/training.md)."""

from pathlib import Path

from _common import start

from facerec import steps
from facerec.distributed import world


def main() -> None:
    args, params = start(__doc__, [("--aligned", {"type": Path, "required": True}),
                                   ("--checkpoint", {"type": Path, "required": True}),
                                   ("--history", {"type": Path, "required": True}),
                                   ("--metrics", {"type": Path, "required": True})])
    summary = steps.train(args.aligned, args.checkpoint, args.history, params.train)
    if world()[0] == 0:
        steps.write_metrics(args.metrics, summary)


if __name__ == "__main__":
    main()
