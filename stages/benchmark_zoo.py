"""DVC stage benchmark_zoo: speed, size and cost of every zoo entry that can run here.

It runs `facerec.pipeline.benchmark_zoo.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import benchmark_zoo
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(benchmark_zoo.command)
