"""Load face-recognition checkpoints, ours and upstream, into eval-mode embedding models.

Every model returned takes N×3×112×112 float RGB normalised as (x/255 − 0.5)/0.5 and
returns N×D embeddings. The file layouts read (``split_checkpoint`` tells them apart):

- ``facerec``: ours (``save_checkpoint``): arch, embedding size, backbone ``state_dict``,
  the training head's ``head_state_dict`` and, when training fitted one, the ``adaptation``
  map applied after the backbone (``facerec.models.adaptation``).
- ``plain``: a state_dict, as insightface (arcface_torch), TransFace and TopoFR save them;
  keys may carry DataParallel's ``module.`` prefix. TopoFR's adds its loss's classifier
  (identities×512) as the top-level ``weight``.
- ``lightning``: AdaFace's PyTorch-Lightning file: ``state_dict`` holds the backbone under
  ``model.`` and the margin head's ``head.kernel`` (512×identities).

Classifier tensors are returned beside the backbone (``Checkpoint.extras``): the model does
not use them, but a checkpoint's parameter count includes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facerec.models.adaptation import EmbeddingMap
from facerec.models.backbones import list_backbones, meta_backbone
from facerec.runtime.io import atomic_path

CHECKPOINT_FORMAT = "facerec-checkpoint-1"
# AdaFace's weights were trained on BGR crops. Our training feeds RGB, so a facerec
# checkpoint of these architectures is RGB and is not wrapped.
BGR_UPSTREAM_PREFIX = "adaface_"
_LISTED_KEYS = 20  # keys shown per kind of difference; a wrong architecture differs in hundreds


@dataclass(frozen=True)
class Layout:
    """Where an upstream file keeps the backbone: under ``container`` (None: the file is the
    state_dict), its keys prefixed with ``prefix`` where present; keys matching ``extra``
    (after the prefix is removed) are not the backbone's."""

    container: str | None
    prefix: str
    extra: re.Pattern


LAYOUTS = {
    "lightning": Layout("state_dict", "model.", re.compile(r"head\.")),
    "plain": Layout(None, "module.", re.compile(r"weight$")),
}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file split into backbone weights (keys as our modules name them) and the
    tensors beside them (training classifiers), with the layout it was read in."""

    layout: str
    state_dict: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    arch: str | None = None  # only facerec checkpoints record it
    embedding_size: int = 512  # upstream models are all 512-d
    options: dict = field(default_factory=dict)  # builder arguments ours record (stem_stride)
    adaptation: dict[str, torch.Tensor] | None = None  # ours: the map after the backbone (mean, projection)


@dataclass(frozen=True)
class KeyDifferences:
    """How a state_dict differs from an architecture's: keys it lacks, keys it has that the
    architecture does not, and shared keys whose shapes differ (key → (found, expected))."""

    missing: list[str]
    unexpected: list[str]
    shapes: dict[str, tuple[list[int], list[int]]]

    def count(self) -> int:
        return len(self.missing) + len(self.unexpected) + len(self.shapes)

    def __str__(self) -> str:
        shapes = [f"{key} {found} (expects {expected})" for key, (found, expected) in self.shapes.items()]
        return (f"missing keys {_listed(self.missing)}, unexpected keys {_listed(self.unexpected)}, "
                f"shape mismatches {_listed(shapes)}")


class BGRInput(nn.Module):
    """Feeds our RGB input to a backbone trained on BGR crops (AdaFace's) by reversing the
    channel axis of N×3×H×W; the normalisation is the same in both conventions."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images.flip(1))


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, embedding_size: int,
                    identities: list[str], head_state: dict | None = None, options: dict | None = None,
                    adaptation: dict[str, torch.Tensor] | None = None) -> None:
    """Write our checkpoint atomically: backbone weights, architecture and the builder
    ``options`` it was made with, training identities, and the ``adaptation`` map (mean,
    projection) that loading applies after the backbone."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "embedding_size": embedding_size,
        "options": dict(options or {}),
        "identities": list(identities),
        "state_dict": {key: value.detach().cpu() for key, value in model.state_dict().items()},
    }
    if head_state is not None:
        payload["head_state_dict"] = {key: value.detach().cpu() for key, value in head_state.items()}
    if adaptation is not None:
        payload["adaptation"] = {key: value.detach().cpu() for key, value in adaptation.items()}
    # Through a file object: given a path, torch.save names the archive's folder after the file,
    # and atomic_path's temporary name would make every save of the same weights differ.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint file as data only (``weights_only``: a checkpoint is untrusted input)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for a non-checkpoint
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if refused:
            raise ValueError(
                f"{path}: holds Python objects besides tensors (such as {refused[1]}), which a "
                "weights-only load refuses: a checkpoint is untrusted input. If you trust the file, "
                "re-save its tensors alone, e.g. torch.save(torch.load(file, weights_only=False)"
                "['state_dict'], 'weights.pt')") from None
        raise ValueError(f"{path}: not a readable torch checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(payload).__name__}")
    return payload


def split_checkpoint(payload: dict, source: str | Path) -> Checkpoint:
    """Detect the layout of a loaded checkpoint (see the module docstring) and split it into
    backbone weights and extras; ``source`` names the file in errors."""
    if payload.get("format") == CHECKPOINT_FORMAT:
        head = payload.get("head_state_dict", {})
        return Checkpoint("facerec", payload["state_dict"], {f"head.{key}": value for key, value in head.items()},
                          payload["arch"], payload["embedding_size"], payload.get("options", {}),
                          payload.get("adaptation"))
    name = "lightning" if isinstance(payload.get("state_dict"), dict) else "plain"
    layout = LAYOUTS[name]
    tensors = payload[layout.container] if layout.container else payload
    not_tensors = [key for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{source}: read as a {name} checkpoint, but {_listed(not_tensors)} are not tensors")
    state_dict: dict[str, torch.Tensor] = {}
    extras: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        key = key.removeprefix(layout.prefix)
        (extras if layout.extra.match(key) else state_dict)[key] = value
    return Checkpoint(name, state_dict, extras)


def compare_keys(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> KeyDifferences:
    """Keys and shapes of ``found`` (a checkpoint's backbone) against ``expected`` (an architecture's)."""
    return KeyDifferences(
        missing=[key for key in expected if key not in found],
        unexpected=[key for key in found if key not in expected],
        shapes={key: (list(found[key].shape), list(expected[key].shape))
                for key in expected if key in found and found[key].shape != expected[key].shape})


def load_checkpoint(path: str | Path, arch: str | None = None) -> tuple[nn.Module, Checkpoint]:
    """The eval-mode model in ``path`` and the checkpoint it came from.

    ``arch`` may be left out for our own checkpoints, which record it. A missing or
    unexpected backbone key, or a shape that differs from ``arch``'s, is an error naming them.
    """
    checkpoint = split_checkpoint(read_checkpoint(path), path)
    arch = arch or checkpoint.arch
    if arch is None:
        raise ValueError(f"{path}: a {checkpoint.layout} checkpoint does not record its architecture: "
                         f"name it (`facerec zoo inspect {path}` lists those that fit)")
    if checkpoint.arch not in (None, arch):
        raise ValueError(f"{path}: checkpoint holds {checkpoint.arch!r}, not {arch!r}")
    model = meta_backbone(arch, embedding_size=checkpoint.embedding_size, **checkpoint.options)
    expected = model.state_dict()
    differences = compare_keys(expected, checkpoint.state_dict)
    if differences.count():
        raise ValueError(f"{path}: does not match {arch}: {differences}")
    # assign=True takes the file's tensors as the weights: nothing is initialised only to be
    # overwritten (a ViT-L would spend seconds on it). Dtypes follow the module (fp16 files).
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in checkpoint.state_dict.items()},
                          assign=True)
    if checkpoint.layout != "facerec" and arch.startswith(BGR_UPSTREAM_PREFIX):
        model = BGRInput(model)
    if checkpoint.adaptation is not None:
        model = EmbeddingMap(model, checkpoint.adaptation["mean"], checkpoint.adaptation["projection"])
    return model.eval(), checkpoint


def load_pretrained(arch: str | None, path: str | Path) -> nn.Module:
    """An eval-mode ``arch`` model with the weights in ``path`` (any layout above; ``arch``
    may be None for our own checkpoints): N×3×112×112 normalised RGB in, N×D embeddings out."""
    return load_checkpoint(path, arch)[0]


def inspect_checkpoint(path: str | Path) -> dict:
    """What ``path`` holds: its layout, the tensors beside the backbone, the registered
    architectures whose keys and shapes it matches and, when none does, how it differs
    from the closest one. With a match, ``mparams`` counts its parameters and extras."""
    checkpoint = split_checkpoint(read_checkpoint(path), path)
    size = checkpoint.embedding_size
    differences = {arch: compare_keys(meta_backbone(arch, embedding_size=size,
                                                    **(checkpoint.options if arch == checkpoint.arch else {})
                                                    ).state_dict(), checkpoint.state_dict)
                   for arch in list_backbones()}
    matches = [arch for arch, difference in differences.items() if not difference.count()]
    record: dict[str, Any] = {"path": str(path), "layout": checkpoint.layout, "recorded_arch": checkpoint.arch,
              "backbone_tensors": len(checkpoint.state_dict),
              "extras": {key: list(value.shape) for key, value in checkpoint.extras.items()},
              "matches": matches}
    if matches:
        parameters = [key for key, _ in meta_backbone(matches[0]).named_parameters()]
        record["mparams"] = (sum(checkpoint.state_dict[key].numel() for key in parameters)
                             + sum(value.numel() for value in checkpoint.extras.values())) / 1e6
    else:
        closest = min(differences, key=lambda arch: differences[arch].count())
        difference = differences[closest]
        record["closest"] = closest
        record["differences"] = {"missing": difference.missing, "unexpected": difference.unexpected,
                                 "shapes": difference.shapes}
    return record


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED_KEYS])
    return f"[{shown}{f', … and {len(items) - _LISTED_KEYS} more' if len(items) > _LISTED_KEYS else ''}]"

