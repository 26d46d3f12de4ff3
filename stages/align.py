"""DVC stage align@<set>: one set's subjects warped onto the ArcFace 112x112 template.

It runs `facerec.pipeline.align.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import align
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(align.command)
