"""DVC stage gate@<set>: Great Expectations checks of one set's detections and aligned crops.

It runs `facerec.pipeline.gate.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import gate
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(gate.command)
