"""DVC stage benchmark: speed, size and cost of our model.

It runs `facerec.pipeline.benchmark.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import benchmark
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(benchmark.command)
