"""The training loop: a backbone plus a margin head over aligned identity folders.

SGD or AdamW (no weight decay on norms and biases), linear warm-up then a polynomial,
cosine or step schedule stepped per iteration, optional gradient clipping, bf16 autocast
on CPU, one log row per step for ``dvc plots``. Batches and their augmentation come from
``facerec.data.batches`` (DataLoader workers).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from facerec.backbones import build_backbone
from facerec.config import TrainParams
from facerec.data.aligned import normalise
from facerec.data.batches import training_batches
from facerec.data.training_faces import load_training_crops
from facerec.distributed import broadcast_float, init_from_environment, training_device
from facerec.hardware import autocast_dtype, needs_grad_scaler
from facerec.heads import build_head
from facerec.partial_fc import PartialFC, shard_bounds
from facerec.io import atomic_path
from facerec.validation import EarlyStopping, hold_out_identities, validation_score
from facerec.zoo import save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per step
    validation: pd.DataFrame  # one row per validation: step, epoch, metric (its name), score, best so far
    summary: dict


def select_training_faces(aligned: pd.DataFrame, min_images: int) -> pd.DataFrame:
    """Faces of identities with at least ``min_images`` crops, labelled 0..C-1 in sorted order."""
    counts = aligned.groupby("identity")["path"].transform("size")
    kept = aligned[counts >= min_images].sort_values("path").reset_index(drop=True)
    identities = sorted(kept["identity"].unique())
    if len(identities) < 2:
        raise ValueError(f"{len(identities)} identities have {min_images} or more aligned faces; "
                         "a classifier needs at least 2")
    kept["label"] = kept["identity"].map({name: index for index, name in enumerate(identities)})
    return kept


def seed_everything(seed: int) -> None:
    """Seed every global RNG a model's initialisation may draw from."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_multiplier(params: TrainParams, steps_per_epoch: int) -> Callable[[int], float]:
    """LR multiplier per iteration: linear warm-up to 1 over ``warmup_epochs``, then the
    ``schedule``: (1 − progress)^poly_power (insightface's), half a cosine to 0, or
    × step_gamma at each of ``step_epochs``."""
    total = steps_per_epoch * params.epochs
    warmup = int(params.warmup_epochs * steps_per_epoch)
    milestones = [int(epoch * steps_per_epoch) for epoch in params.step_epochs]

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if params.schedule == "poly":
            return (1.0 - progress) ** params.poly_power
        if params.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return params.step_gamma ** bisect.bisect_right(milestones, step)

    return multiplier


def parameter_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only: decaying norm scales, biases and
    PReLU slopes (every tensor of one dimension) only pulls them towards 0."""
    decay, no_decay = [], []
    for module in modules:
        for parameter in module.parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim > 1 else no_decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(params: TrainParams, modules: list[nn.Module]) -> torch.optim.Optimizer:
    groups = parameter_groups(modules, params.weight_decay)
    if params.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=params.lr, betas=(params.momentum, 0.999), foreach=True)
    return torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum, foreach=True)


def training_fingerprint(params: TrainParams, faces: pd.DataFrame, world_size: int = 1) -> str:
    """What a saved training state belongs to: every parameter but the thread and worker
    counts, the faces, and the number of processes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(params.model_dump_json(exclude={"num_threads", "workers", "checkpoint_every"}).encode())
    digest.update(str(world_size).encode())
    digest.update(pd.util.hash_pandas_object(faces[["path", "label"]], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _rank_path(path: Path, rank: int, world_size: int) -> Path:
    """Each rank of a multi-process run keeps its own state (its shard of the centres, its RNG)."""
    return path if world_size == 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def train_model(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                checkpoint_path: str | Path, state_path: str | Path | None = None) -> TrainResult:
    """Train ``params.backbone`` with the margin head of ``params.head``; save the checkpoint;
    return the history.

    With ``state_path``, the whole training state (model, head, optimiser, scheduler, grad
    scaler, RNG state, step, history, validations and early-stopping state) is written there
    atomically every ``checkpoint_every`` steps; a run that finds a state of the same
    parameters, faces and world size there resumes from it and ends with exactly the weights
    of an uninterrupted run. The state is removed at the end.

    Launched by torchrun with several processes, each trains on its slice of every global
    batch (``batch_size`` per process) under DDP, holds its shard of the class centres
    (``facerec.partial_fc``), and rank 0 validates and writes the checkpoint.
    """
    torch.set_num_threads(params.num_threads)
    device = training_device(params.device)
    rank, world_size = init_from_environment(device)
    seed_everything(params.seed)
    selected = select_training_faces(aligned, params.min_images_per_identity)
    faces, held_out = hold_out_identities(selected.drop(columns="label"), params.validation_identities, params.seed)
    faces = select_training_faces(faces, params.min_images_per_identity)
    num_classes = int(faces["label"].max()) + 1
    log.info("training %s on %d faces of %d identities (%s, %d process%s); %d faces of %d identities held out "
             "for validation", params.backbone, len(faces), num_classes, device, world_size,
             "es" if world_size > 1 else "", len(held_out), held_out["identity"].nunique())
    crops = load_training_crops(aligned_dir, faces["path"].tolist())
    labels = torch.tensor(faces["label"].to_numpy(), dtype=torch.long)
    held_out_crops = load_training_crops(aligned_dir, held_out["path"].tolist()) if len(held_out) and rank == 0 else None
    stopping = EarlyStopping(params.patience, params.min_delta)
    validations: list[dict] = []
    best_weights: dict | None = None

    model = build_backbone(params.backbone, embedding_size=params.embedding_size, **params.backbone_options())
    memory_format = torch.channels_last if params.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)
    shard_start, shard_end = shard_bounds(num_classes, rank, world_size)
    head = build_head(params.head.type, params.embedding_size, shard_end - shard_start,
                      **params.head.model_dump(exclude={"type"})).to(device)
    criterion = PartialFC(head, num_classes, params.sample_rate)
    optimizer = build_optimizer(params, [model, head])
    global_batch = params.batch_size * world_size
    steps_per_epoch = len(faces) // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} faces are fewer than one batch of {global_batch}")
    total_steps = steps_per_epoch * params.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(params, steps_per_epoch))
    autocast = autocast_dtype(params.precision, device)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(autocast))
    trained = DDP(model) if world_size > 1 else model
    forward = torch.compile(trained) if params.compile else trained

    fingerprint = training_fingerprint(params, faces, world_size)
    state_path = _rank_path(Path(state_path), rank, world_size) if state_path else None
    history, step, trained_seconds = [], 0, 0.0
    if state_path and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            history, step, trained_seconds = state["history"], state["step"], state["seconds"]
            validations, best_weights = state["validations"], state["best_weights"]
            stopping.load_state_dict(state["stopping"])
            log.info("resuming from %s at step %d of %d", state_path, step, total_steps)
        else:
            log.warning("%s holds the state of other parameters or faces: starting afresh", state_path)

    started = time.perf_counter() - trained_seconds
    model.train()
    head.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"train {params.backbone}", unit="step",
                    mininterval=10, disable=rank != 0)
    batches = training_batches(crops, labels, params.augment_params(), params.batch_size, steps_per_epoch,
                               params.seed, step, total_steps, params.workers, rank, world_size)
    for images, batch_labels in batches:
        if stopping.should_stop:
            break
        epoch, batch_index = divmod(step, steps_per_epoch)
        images = normalise(images.to(device, non_blocking=True)).contiguous(memory_format=memory_format)
        batch_labels = batch_labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            embeddings = forward(images)
        loss, accuracy = criterion(embeddings, batch_labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if params.grad_clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([*model.parameters(), *head.parameters()], params.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        history.append({"step": step, "epoch": epoch + (batch_index + 1) / steps_per_epoch,
                        "loss": loss.item(), "train_accuracy": accuracy.item(),
                        "lr": optimizer.param_groups[0]["lr"]})
        progress.update()
        progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1, refresh=False)
        if params.validation_identities and step % steps_per_epoch == 0:
            # Rank 0 scores; every rank takes the same decision from its score.
            score = broadcast_float(validation_score(model, held_out_crops, held_out["identity"].to_numpy(),
                                                     params.validation_metric) if rank == 0 else 0.0)
            if stopping.update(score, step):
                best_weights = {"model": _copy(model.state_dict()), "head": criterion.full_state_dict()}
            validations.append({"step": step, "epoch": step / steps_per_epoch, "metric": params.validation_metric,
                                "score": score, "best": stopping.best})
            log.info("epoch %d: validation %s %.4f (best %.4f at step %d)", epoch + 1, params.validation_metric,
                     score, stopping.best, stopping.best_step)
        if state_path and params.checkpoint_every and step % params.checkpoint_every == 0 and step < total_steps:
            _save_state(state_path, fingerprint=fingerprint, step=step, history=history,
                        seconds=time.perf_counter() - started, model=model.state_dict(), head=head.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict(), torch_rng=torch.get_rng_state(),
                        validations=validations, best_weights=best_weights, stopping=stopping.state_dict())
    progress.close()
    seconds = time.perf_counter() - started
    if stopping.should_stop:
        log.info("early stop at step %d: no validation gain in %d epochs", step, params.patience)
    # Model selection: the best validated weights, not the last.
    weights = best_weights or {"model": model.state_dict(), "head": criterion.full_state_dict()}
    if rank == 0:
        model.load_state_dict(weights["model"])
        save_checkpoint(checkpoint_path, model, params.backbone, params.embedding_size,
                        identities=sorted(faces["identity"].unique()), head_state=weights["head"],
                        options=params.backbone_options())
    if state_path:
        state_path.unlink(missing_ok=True)
    last_epoch = pd.DataFrame(history[-steps_per_epoch:])
    summary = {
        "backbone": params.backbone,
        "identities": num_classes,
        "faces": len(faces),
        "epochs": params.epochs,
        "steps": step,
        "processes": world_size,
        "final_loss": round(float(last_epoch["loss"].mean()), 4),
        "final_train_accuracy": round(float(last_epoch["train_accuracy"].mean()), 4),
        "train_seconds": round(seconds, 1),
        "samples_per_second": round(step * global_batch / seconds, 2),
    }
    if validations:
        summary.update({f"validation_{params.validation_metric}": stopping.best, "best_step": stopping.best_step,
                        "stopped_early": stopping.should_stop})
    log.info("trained in %.0f s: %s", seconds, summary)
    return TrainResult(history=pd.DataFrame(history), validation=pd.DataFrame(validations), summary=summary)


def _copy(state: dict) -> dict:
    return {key: value.detach().clone() for key, value in state.items()}
