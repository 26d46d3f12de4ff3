"""DVC stage leaderboard: every model's figures in one table, page and plot.

It runs `facerec.pipeline.leaderboard.command`, which the `facerec` CLI registers too."""

import _path  # noqa: F401  (this project's facerec first on sys.path)

from facerec.pipeline import leaderboard
from facerec.pipeline.common import run_stage

if __name__ == "__main__":  # spawned worker processes re-import the main module
    run_stage(leaderboard.command)
