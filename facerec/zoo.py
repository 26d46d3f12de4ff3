"""Load face-recognition checkpoints, ours and upstream, into eval-mode embedding models.

Every model returned takes N×3×112×112 float RGB normalised as (x/255 − 0.5)/0.5 and
returns N×D embeddings.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facerec.backbones import build_backbone
from facerec.io import atomic_path

CHECKPOINT_FORMAT = "facerec-checkpoint-1"


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, embedding_size: int,
                    identities: list[str], head: nn.Module | None = None) -> None:
    """Write our checkpoint atomically: backbone weights, architecture, training identities."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "embedding_size": embedding_size,
        "identities": list(identities),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    if head is not None:
        payload["head_state_dict"] = {key: value.detach().cpu() for key, value in head.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file as data only (``weights_only``: a checkpoint is untrusted input)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a non-checkpoint
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(payload).__name__}")
    return payload


def load_pretrained(arch: str, path: str | Path) -> nn.Module:
    """An eval-mode ``arch`` backbone with the weights in ``path``.

    Accepts our own checkpoints and plain state_dicts in insightface's layout (optionally
    with DataParallel ``module.`` prefixes). Missing or unexpected keys are an error listing them.
    """
    payload = read_checkpoint(path)
    if payload.get("format") == CHECKPOINT_FORMAT:
        if payload["arch"] != arch:
            raise ValueError(f"{path}: checkpoint holds {payload['arch']!r}, not {arch!r}")
        state_dict = payload["state_dict"]
        model = build_backbone(arch, embedding_size=payload["embedding_size"])
    else:
        state_dict = {key.removeprefix("module."): value for key, value in payload.items()}
        model = build_backbone(arch)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: does not match {arch}: missing keys {missing}, unexpected keys {unexpected}")
    return model.eval()
