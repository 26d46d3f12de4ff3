"""DVC stage gate@<set>: Great Expectations checks of one set's detections and aligned crops.

A failed expectation stops `dvc repro` here, before any model trains or is evaluated on
the data, with a summary naming the expectation and example rows.
"""

import sys
from pathlib import Path

from _common import start

from facerec import steps
from facerec.gate import GateFailed


def main() -> None:
    args, params = start(__doc__, [("set", {}), ("--detections", {"type": Path, "required": True}),
                                   ("--aligned", {"type": Path, "required": True}),
                                   ("--out", {"type": Path, "required": True})])
    try:
        steps.gate(args.set, params.data.sets[args.set], args.detections, args.aligned, args.out,
                   params.gate, training_set=args.set == params.data.train_set)
    except GateFailed as failure:
        sys.exit(f"data gate failed; full results in {args.out / (args.set + '.validation.json')}\n{failure}")


if __name__ == "__main__":
    main()
