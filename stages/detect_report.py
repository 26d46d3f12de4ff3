"""DVC stage detect_report: every set's detection and alignment figures in one file.

It runs `facerec.pipeline.detect_report.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import detect_report
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(detect_report.command)
