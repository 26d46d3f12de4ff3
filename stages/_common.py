"""What every stage script does first: logging, then params.yaml validated before any work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facerec.config import ConfigError, Params, load_params  # noqa: E402
from facerec.console import setup_logging  # noqa: E402


def start(description: str, arguments: list[tuple[str, dict]]) -> tuple[argparse.Namespace, Params]:
    setup_logging()
    parser = argparse.ArgumentParser(description=description)
    for name, options in arguments:
        parser.add_argument(name, **options)
    args = parser.parse_args()
    try:
        return args, load_params("params.yaml")
    except ConfigError as error:
        sys.exit(str(error))
