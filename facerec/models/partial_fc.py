"""Partial FC (An et al. 2022): a margin loss over millions of identities.

The class centres are split across the processes of a DDP run (rank r holds a contiguous
shard), every rank sees the whole global batch's embeddings (all-gathered), and each step
scores them against only a sample of its shard: the classes present in the batch plus
random others, ``sample_rate`` of the shard in all. The softmax is taken across the shards
without gathering the logits (a max and a sum per row over the ranks), so neither the
centres nor the logits of all classes ever sit in one process. With one process and
``sample_rate`` 1 it is the plain margin loss.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from facerec.models.heads import CosineClassifier
from facerec.training.distributed import world


def shard_bounds(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """The classes [start, end) rank ``rank`` holds: contiguous, sizes differing by at most one."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class _GatherRows(torch.autograd.Function):
    """All ranks' N×D rows, stacked in rank order; the gradient of our own rows is the sum
    of every rank's (each rank's loss covers the whole batch through its own shard), times
    the world size, because DDP then averages the backbone's gradients over the ranks."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor) -> torch.Tensor:
        return torch.cat(_gather_plain(rows))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)
        rank, size = dist.get_rank(), dist.get_world_size()
        return grad.chunk(size)[rank] * size


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of N rows whose logits are split by columns across the ranks;
    ``targets`` holds each row's column in this rank's block, −1 where another rank has it.
    The backward is local: softmax − one-hot over our columns, divided by N."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        row_max = logits.max(dim=1).values
        dist.all_reduce(row_max, dist.ReduceOp.MAX)
        exp = (logits - row_max[:, None]).exp_()
        row_sum = exp.sum(dim=1)
        dist.all_reduce(row_sum)
        probabilities = exp.div_(row_sum[:, None])
        owned = torch.nonzero(targets >= 0).squeeze(1)
        target_probability = torch.zeros_like(row_sum)
        target_probability[owned] = probabilities[owned, targets[owned]]
        dist.all_reduce(target_probability)
        ctx.save_for_backward(probabilities, targets, owned)
        return -target_probability.clamp_min(1e-30).log().mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        probabilities, targets, owned = ctx.saved_tensors
        grad_logits = probabilities.clone()
        grad_logits[owned, targets[owned]] -= 1.0
        return grad_logits * (grad / len(probabilities)), None


class PartialFC(nn.Module):
    """Margin loss of a head over this rank's shard of the classes, sampled each step.

    ``head`` is a ``facerec.models.heads`` head built for this rank's shard (its ``weight`` is the
    shard's centres); ``forward`` takes this rank's raw embeddings and global labels and
    returns the loss of the global batch and its top-1 accuracy over all classes.
    """

    def __init__(self, head: CosineClassifier, num_classes: int, sample_rate: float) -> None:
        super().__init__()
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate}")
        self.rank, self.world_size = world()
        self.start, self.end = shard_bounds(num_classes, self.rank, self.world_size)
        if head.weight.shape[0] != self.end - self.start:
            raise ValueError(f"rank {self.rank} holds classes {self.start}..{self.end - 1}: its head needs "
                             f"{self.end - self.start} centres, not {head.weight.shape[0]}")
        self.head, self.num_classes, self.sample_rate = head, num_classes, sample_rate

    def _shard_positions(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(each label's index in this rank's shard, whether the shard holds it)."""
        local = labels - self.start
        return local, (local >= 0) & (local < self.end - self.start)

    def sampled_classes(self, labels: torch.Tensor) -> torch.Tensor:
        """Local indices of the shard's centres scored this step, sorted: every class of
        ``labels`` in the shard, plus random others up to ``sample_rate`` of the shard."""
        shard = self.end - self.start
        wanted = math.ceil(self.sample_rate * shard)
        if wanted >= shard:
            return torch.arange(shard, device=labels.device)
        local, ours = self._shard_positions(labels)
        positive = torch.unique(local[ours])
        # Random scores, positives pushed to the top: the top `wanted` are the sample.
        scores = torch.rand(shard, device=labels.device)
        scores[positive] = 2.0
        return torch.topk(scores, max(wanted, len(positive))).indices.sort().values

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            embeddings = embeddings.float()
            if self.world_size > 1:
                embeddings = _GatherRows.apply(embeddings)
                labels = torch.cat(_gather_plain(labels))
            classes = self.sampled_classes(labels)
            # Each row's column among the sampled classes, −1 where it is not ours.
            column_of = torch.full((self.end - self.start,), -1, dtype=torch.long, device=labels.device)
            column_of[classes] = torch.arange(len(classes), device=labels.device)
            local, ours = self._shard_positions(labels)
            targets = torch.where(ours, column_of[local.clamp(0, self.end - self.start - 1)], -1)
            shard_weight = self.head.weight if len(classes) == self.end - self.start else self.head.weight[classes]
            cosine = self.head.cosine(embeddings, shard_weight)
            logits = self.head.margin_logits(cosine, targets, embeddings)
            if self.world_size == 1:
                loss = F.cross_entropy(logits, targets)
            else:
                loss = _ShardedCrossEntropy.apply(logits, targets)
            return loss, self._accuracy(logits.detach(), targets)

    def _accuracy(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Share of rows whose own class has the largest logit among all scored classes."""
        best = logits.max(dim=1).values
        target_logit = torch.full_like(best, -math.inf)
        owned = torch.nonzero(targets >= 0).squeeze(1)
        target_logit[owned] = logits[owned, targets[owned]]
        if self.world_size > 1:
            dist.all_reduce(best, dist.ReduceOp.MAX)
            dist.all_reduce(target_logit, dist.ReduceOp.MAX)
        return (target_logit >= best).float().mean()

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The head's state with every rank's centres in class order (for the checkpoint);
        collective: every rank must call it."""
        state = {key: value.detach().clone() for key, value in self.head.state_dict().items()}
        if self.world_size > 1:
            # Shards differ in size by one at most: gather them padded to the largest, then trim.
            bounds = [shard_bounds(self.num_classes, rank, self.world_size) for rank in range(self.world_size)]
            largest = max(end - start for start, end in bounds)
            weight = state["weight"]
            padded = torch.cat([weight, weight.new_zeros(largest - len(weight), weight.shape[1])])
            shards = _gather_plain(padded)
            state["weight"] = torch.cat([shard[:end - start] for shard, (start, end) in zip(shards, bounds)]).cpu()
        return state


def _gather_plain(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (same shape on all), in rank order; no gradient."""
    gathered = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.contiguous())
    return gathered
