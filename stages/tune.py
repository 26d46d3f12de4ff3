"""DVC stage tune: Optuna's search of the margin head on short trainings.

It runs `facerec.pipeline.tune.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import tune
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(tune.command)
