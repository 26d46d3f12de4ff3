"""Training batches: the face order of each epoch, per-crop augmentation, DataLoader workers.

Every random choice is a function of (seed, epoch, position in the epoch) alone: a crop's
augmentation is drawn from its own seed, so the batches are the same with any number of
workers and a run resumed at any step sees exactly the batches an uninterrupted run saw.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from facerec.config import AugmentParams


def build_transform(params: AugmentParams, size: int) -> v2.Transform:
    """torchvision transforms of one uint8 C×H×W crop for ``params``; a zero setting adds nothing."""
    transforms: list[v2.Transform] = []
    if params.flip:
        transforms.append(v2.RandomHorizontalFlip(params.flip))
    if params.crop_scale != (1.0, 1.0) or params.crop_ratio != (1.0, 1.0):
        transforms.append(v2.RandomResizedCrop(size, scale=params.crop_scale, ratio=params.crop_ratio,
                                               antialias=True))
    if params.brightness or params.contrast or params.saturation:
        transforms.append(v2.ColorJitter(params.brightness, params.contrast, params.saturation))
    if params.greyscale:
        transforms.append(v2.RandomGrayscale(params.greyscale))
    if params.blur:
        transforms.append(v2.RandomApply([v2.GaussianBlur(5, params.blur_sigma)], p=params.blur))
    return v2.Compose(transforms) if transforms else v2.Identity()


def epoch_order(seed: int, epoch: int, count: int) -> torch.Tensor:
    """The shuffled face order of ``epoch``: a function of seed and epoch alone."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


class AugmentedFaces(Dataset):
    """Crops in memory (N×3×H×W uint8) and their labels; an item is keyed by
    (face index, augmentation seed) and comes out augmented, still uint8."""

    def __init__(self, crops: torch.Tensor, labels: torch.Tensor, params: AugmentParams) -> None:
        self.crops, self.labels = crops, labels
        self.transform = build_transform(params, crops.shape[-1])

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, crop_seed = key
        # torchvision draws from the global RNG: seed it per crop, and leave the caller's
        # stream (dropout, stochastic depth) as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(crop_seed)
            crop = self.transform(self.crops[index])
        return crop, self.labels[index]


class StepBatches(Sampler[list[tuple[int, int]]]):
    """The batches of steps ``start``..``total`` - 1: each a list of (face index, crop seed),
    ``steps_per_epoch`` per epoch, over a new shuffle each epoch (a last partial batch is
    dropped). With several processes a step's global batch is ``world_size`` × ``batch_size``
    faces and ``rank`` takes its slice: the global batch is the one a single process would see."""

    def __init__(self, count: int, batch_size: int, steps_per_epoch: int, seed: int, start: int, total: int,
                 rank: int = 0, world_size: int = 1) -> None:
        self.count, self.batch_size, self.steps_per_epoch = count, batch_size, steps_per_epoch
        self.seed, self.start, self.total = seed, start, total
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order: torch.Tensor | None = None
        order_epoch = -1
        for step in range(self.start, self.total):
            epoch, batch_index = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = epoch_order(self.seed, epoch, self.count), epoch
            assert order is not None  # drawn at the first step: no epoch equals the initial -1
            first = (batch_index * self.world_size + self.rank) * self.batch_size
            positions = range(first, first + self.batch_size)
            yield [(int(order[position]), self._crop_seed(epoch, position)) for position in positions]

    def _crop_seed(self, epoch: int, position: int) -> int:
        return (self.seed * 1_000_003 + epoch) * 10_000_019 + position


def training_batches(crops: torch.Tensor, labels: torch.Tensor, params: AugmentParams, batch_size: int,
                     steps_per_epoch: int, seed: int, start: int, total: int, workers: int,
                     rank: int = 0, world_size: int = 1) -> DataLoader:
    """(uint8 images, labels) of this rank for each step from ``start`` to ``total``;
    ``workers`` processes prepare batches ahead of the training step (0: in this process)."""
    sampler = StepBatches(len(crops), batch_size, steps_per_epoch, seed, start, total, rank, world_size)
    # A generator of its own: the loader draws its workers' base seed from it, not from the
    # global RNG that dropout draws from (and that a resume restores), so a resumed run's
    # dropout masks are an uninterrupted run's.
    return DataLoader(AugmentedFaces(crops, labels, params), batch_sampler=sampler, num_workers=workers,
                      prefetch_factor=2 if workers else None, pin_memory=torch.cuda.is_available(),
                      generator=torch.Generator().manual_seed(seed))
