"""DVC stage teacher: the embeddings of the training faces by train.teacher, for distillation.

It runs `facerec.pipeline.teacher.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import teacher
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(teacher.command)
