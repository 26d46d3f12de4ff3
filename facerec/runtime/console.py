"""Logging set-up shared by the CLI and the stage scripts."""

import logging
import warnings

from rich.console import Console
from rich.logging import RichHandler


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(name)s: %(message)s", datefmt="[%X]",
                        # stderr: stdout carries the commands' JSON results, ready for a pipe.
                        handlers=[RichHandler(console=Console(stderr=True), show_path=False, rich_tracebacks=False)],
                        force=True)
    # facenet-pytorch's MTCNN passes a deprecated argument to torch on every call.
    warnings.filterwarnings("ignore", category=UserWarning, module="facenet_pytorch")
    warnings.filterwarnings("ignore", category=FutureWarning, module="facenet_pytorch")
    # torch.onnx.export's graph optimiser logs every node it leaves alone at INFO.
    for name in ("onnx_ir", "onnxscript"):
        logging.getLogger(name).setLevel(logging.WARNING)
