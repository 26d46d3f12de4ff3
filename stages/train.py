"""DVC stage train: a backbone with a margin head on the aligned training set (torchrun: several processes).

It runs `facerec.pipeline.train.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import train
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(train.command)
