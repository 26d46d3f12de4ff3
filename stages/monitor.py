"""DVC stage monitor: Evidently drift of a set of photos against the training set.

It runs `facerec.pipeline.monitor.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import monitor
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(monitor.command)
