"""Partial FC: sampled classes, and sharded across two real gloo processes it trains exactly
as one process does on the same global batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from facerec.config import HeadParams
from facerec.models.heads import build_head
from facerec.models.partial_fc import PartialFC, shard_bounds

CLASSES, DIM, INPUT, BATCH = 11, 16, 24, 12
HEADS = [("arcface", {"scale": 32.0, "margin": 0.5}), ("cosface", {"scale": 32.0, "margin": 0.35}),
         ("adaface", {"scale": 32.0, "margin": 0.4})]


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """A global batch of 2 × BATCH inputs, their labels, and a BN-free backbone (batch norm
    statistics would differ between one batch and two halves)."""
    generator = torch.Generator().manual_seed(5)
    inputs = torch.randn(2 * BATCH, INPUT, generator=generator)
    labels = torch.randint(0, CLASSES, (2 * BATCH,), generator=generator)
    torch.manual_seed(7)
    return inputs, labels, torch.nn.Linear(INPUT, DIM)


def _head(kind: str, options: dict, classes: int = CLASSES) -> torch.nn.Module:
    torch.manual_seed(11)
    return build_head(DIM, classes, HeadParams(type=kind, **options))


def _one_step(backbone, head, criterion, inputs, labels) -> float:
    parameters = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.SGD(parameters, lr=0.5)
    loss, _ = criterion(backbone(inputs), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


@pytest.mark.parametrize("kind, options", HEADS)
def test_one_process_with_every_class_is_the_plain_margin_loss(kind, options):
    inputs, labels, backbone = _problem()
    embeddings = backbone(inputs)
    plain = F.cross_entropy(_head(kind, options)(embeddings, labels), labels)
    partial, accuracy = PartialFC(_head(kind, options), CLASSES, 1.0)(embeddings, labels)
    assert torch.equal(plain, partial) and 0.0 <= accuracy.item() <= 1.0


def test_a_sample_holds_every_class_of_the_batch_and_the_share_asked_for():
    head = build_head(DIM, 1000, HeadParams(type="arcface", scale=64.0, margin=0.5))
    criterion = PartialFC(head, 1000, 0.1)
    labels = torch.tensor([3, 3, 999, 500, 17])
    torch.manual_seed(0)
    classes = criterion.sampled_classes(labels)
    assert len(classes) == math.ceil(0.1 * 1000) and torch.equal(classes, classes.unique())
    assert set(labels.tolist()) <= set(classes.tolist())
    embeddings = torch.randn(5, DIM, requires_grad=True)
    torch.manual_seed(0)  # the same draw as above
    loss, _ = criterion(embeddings, labels)
    loss.backward()
    rows_with_gradient = torch.nonzero(head.weight.grad.abs().sum(dim=1)).squeeze(1)
    assert set(rows_with_gradient.tolist()) <= set(classes.tolist())  # only sampled centres move


def _rank_step(rank: int, store_file: str, kind: str, options: dict, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    inputs, labels, backbone = _problem()
    start, end = shard_bounds(CLASSES, rank, 2)
    head = _head(kind, options)  # the single process's centres; this rank keeps its shard
    shard = _head(kind, options, end - start)
    shard.weight.data.copy_(head.weight.data[start:end])
    criterion = PartialFC(shard, CLASSES, 1.0)
    mine = slice(rank * BATCH, (rank + 1) * BATCH)
    loss = _one_step(DDP(backbone), shard, criterion, inputs[mine], labels[mine])
    full = criterion.full_state_dict()
    if rank == 0:  # numpy arrays pickle by value: tensors would be shared memory that dies with us
        results.put((loss, {key: value.numpy() for key, value in backbone.state_dict().items()},
                     {key: value.numpy() for key, value in full.items()}))
    dist.destroy_process_group()


@pytest.mark.parametrize("kind, options", HEADS)
def test_two_gloo_processes_with_sharded_centres_train_as_one_process_on_the_global_batch(kind, options, tmp_path):
    inputs, labels, backbone = _problem()
    head = _head(kind, options)
    single_loss = _one_step(backbone, head, PartialFC(head, CLASSES, 1.0), inputs, labels)

    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_rank_step, args=(rank, str(tmp_path / "store"), kind, options, results))
                 for rank in range(2)]
    for process in processes:
        process.start()
    loss, backbone_state, head_state = results.get(timeout=120)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert loss == pytest.approx(single_loss, rel=1e-5)
    for key, value in backbone.state_dict().items():
        torch.testing.assert_close(torch.from_numpy(backbone_state[key]), value, rtol=1e-5, atol=1e-6)
    for key, value in head.state_dict().items():
        torch.testing.assert_close(torch.from_numpy(head_state[key]), value, rtol=1e-5, atol=1e-6)
