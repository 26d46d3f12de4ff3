"""The static checks CI runs through the test command: ruff on the whole tree, mypy on the package."""

from __future__ import annotations

import subprocess
import sys

from conftest import PROJECT_ROOT


def _tool(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)


def test_ruff_finds_nothing_in_the_tree():
    result = _tool("ruff", "check", ".")
    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_finds_no_type_error_in_the_package():
    result = _tool("mypy")  # configured in pyproject.toml: the facerec package, pydantic's plugin
    assert result.returncode == 0, result.stdout[-4000:]
