"""Several training processes through torchrun: process group set-up and rank queries.

``torchrun --nproc_per_node N stages/train.py ...`` (or ``python -m facerec train``) starts
N processes with RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT in their environment;
``init_from_environment`` joins them into one group (NCCL on GPUs, gloo on CPUs). Run
alone, a process is rank 0 of a world of 1 and nothing is initialised.
"""

from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a distributed run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_environment(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun describes in the environment, once; (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        log.info("rank %d of %d joined the %s process group", dist.get_rank(), dist.get_world_size(), backend)
    return world()


def training_device(choice: str) -> torch.device:
    """The device this process trains on: ``cpu``, ``cuda`` (this process's LOCAL_RANK GPU),
    or ``auto`` (cuda where a GPU is visible)."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("train.device is cuda but torch sees no GPU")
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def broadcast_float(value: float) -> float:
    """Rank 0's ``value`` on every rank (a no-op alone)."""
    if world()[1] == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.broadcast(tensor, 0)
    return float(tensor.item())
