"""DVC stage detect@<set>: faces and 5 landmarks for every photo of one data set.

It runs `facerec.pipeline.detect.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import detect
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(detect.command)
