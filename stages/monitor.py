"""DVC stage monitor: Evidently drift report of a set of photos against the training set, per face.

Drift is recorded, not an error (the face-monitor flow acts on it per monitor.on_drift);
the stage fails only on missing or inconsistent input, naming the file.
"""

import logging
import sys
from pathlib import Path

from _common import start

from facerec import steps
from facerec.monitoring import MonitorInputError


def main() -> None:
    folders = {"type": Path, "nargs": 2, "metavar": ("DETECTIONS", "ALIGNED"), "required": True}
    args, params = start(__doc__, [("--reference", {**folders, "help": "the training set's folders"}),
                                   ("--current", {**folders, "help": "the monitored set's folders"}),
                                   ("--checkpoint", {"type": Path, "required": True}),
                                   ("--html", {"type": Path, "required": True}),
                                   ("--json", {"type": Path, "required": True})])
    try:
        summary = steps.monitor(tuple(args.reference), tuple(args.current), args.checkpoint, args.html, args.json,
                                params.monitor)
    except (MonitorInputError, FileNotFoundError) as error:
        sys.exit(f"monitor: {error}")
    logging.getLogger("monitor").info(
        "%s: %d of %d features drifted; report %s, verdict %s", "DRIFT" if summary["dataset_drift"] else "no drift",
        summary["drifted_features"], summary["features"], args.html, args.json)


if __name__ == "__main__":
    main()
