"""Puts this project's ``facerec`` first on ``sys.path`` for the stage scripts beside it, so a
stage runs the code that dvc.yaml declares as its dependency, not another installed copy."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
