"""Starting a training from published weights: the weights, and the head imprinted from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facerec.config import Params
from facerec.models.checkpoints import BGR_UPSTREAM_PREFIX, load_checkpoint
from facerec.registry import PEER_BACKBONES


def starting_weights(arch: str, path: Path | None) -> dict[str, torch.Tensor]:
    """The backbone weights a training starts from (``train.init_from``): a checkpoint's of
    architecture ``arch`` (ours or upstream, checked as ``load_checkpoint`` checks it), or a
    peer's published weights imported into our backbone (``PEER_BACKBONES``)."""
    if arch in PEER_BACKBONES:
        from facerec.models.peers.sface import sface_state_dict

        return sface_state_dict()
    if path is None:
        raise ValueError(f"{arch}: a checkpoint to start from needs its path")
    _, checkpoint = load_checkpoint(path, arch)  # checks the keys and shapes
    if checkpoint.adaptation is not None:
        raise ValueError(f"{path}: holds an adapted model; start from the checkpoint it was adapted from")
    if checkpoint.layout != "facerec" and arch.startswith(BGR_UPSTREAM_PREFIX):
        raise ValueError(f"{path}: {arch}'s published weights expect BGR crops and training feeds RGB; "
                         "use it as a teacher instead")
    return {key: value.detach().clone() for key, value in checkpoint.state_dict.items()}


def initial_weights(params: Params) -> dict[str, torch.Tensor] | None:
    """The weights of ``train.init_from``'s zoo entry; None to start from random weights."""
    if params.train.init_from is None:
        return None
    entry = params.zoo[params.train.init_from]
    return starting_weights(entry.arch, entry.path)


def class_means(embeddings: np.ndarray, labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """C×D: each class's L2-normalised mean embedding (weight imprinting: a new head whose
    centres already sit where the started-from backbone puts each person)."""
    sums = np.zeros((num_classes, embeddings.shape[1]), np.float64)
    np.add.at(sums, labels, embeddings)
    return torch.nn.functional.normalize(torch.from_numpy(sums.astype(np.float32)))
