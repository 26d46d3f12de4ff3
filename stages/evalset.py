"""DVC stage evalset: one evaluation set's faces and pairs in one folder.

It runs `facerec.pipeline.evalset.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import evalset
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(evalset.command)
