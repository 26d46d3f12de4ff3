"""DVC stages evaluate and evaluate_zoo: one model (ours, a zoo entry) on one evaluation set.

It runs `facerec.pipeline.evaluate.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import evaluate
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(evaluate.command)
