"""DVC stage evaluate_zoo: LFW metrics of every zoo entry that can run here.

It runs `facerec.pipeline.evaluate_zoo.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import evaluate_zoo
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(evaluate_zoo.command)
