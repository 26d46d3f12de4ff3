"""The training loop: a backbone plus a margin head over aligned identity folders.

SGD or AdamW (no weight decay on norms and biases), linear warm-up then a polynomial,
cosine or step schedule stepped per iteration, optional gradient clipping, bf16 autocast
on CPU, one log row per step for ``dvc plots``.
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
from tqdm import tqdm

from facerec.backbones import build_backbone
from facerec.config import TrainParams
from facerec.data.aligned import load_crops, normalise
from facerec.hardware import use_bf16
from facerec.heads import build_head
from facerec.io import atomic_path
from facerec.validation import EarlyStopping, hold_out_identities, validation_score
from facerec.zoo import save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per step
    validation: pd.DataFrame  # one row per validation: step, epoch, score, best
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


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip of uint8 crops (a face mirrored is the same person)."""
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = batch.clone()
    batch[flip] = batch[flip].flip(-1)
    return batch


def training_fingerprint(params: TrainParams, faces: pd.DataFrame) -> str:
    """What a saved training state belongs to: every parameter but the thread count, and the faces."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(params.model_dump_json(exclude={"num_threads", "checkpoint_every"}).encode())
    digest.update(pd.util.hash_pandas_object(faces[["path", "label"]], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def epoch_order(seed: int, epoch: int, count: int) -> torch.Tensor:
    """The shuffled face order of ``epoch``: a function of seed and epoch alone, so a resumed
    run sees the same order without saving it."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))


def _save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def train_model(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                checkpoint_path: str | Path, state_path: str | Path | None = None) -> TrainResult:
    """Train ``params.backbone`` with the margin head of ``params.head``; save the checkpoint;
    return the history.

    With ``state_path``, the whole training state (model, head, optimiser, scheduler, RNG
    states, step, history) is written there atomically every ``checkpoint_every`` steps; a
    run that finds a state of the same parameters and faces there resumes from it and ends
    with exactly the weights of an uninterrupted run. The state is removed at the end.
    """
    torch.set_num_threads(params.num_threads)
    seed_everything(params.seed)
    augment_generator = torch.Generator().manual_seed(params.seed)
    selected = select_training_faces(aligned, params.min_images_per_identity)
    faces, held_out = hold_out_identities(selected.drop(columns="label"), params.validation_identities, params.seed)
    faces = select_training_faces(faces, params.min_images_per_identity)
    num_classes = int(faces["label"].max()) + 1
    log.info("training %s on %d faces of %d identities; %d faces of %d identities held out for validation",
             params.backbone, len(faces), num_classes, len(held_out), held_out["identity"].nunique())
    crops = load_crops(aligned_dir, faces["path"].tolist())
    labels = torch.tensor(faces["label"].to_numpy(), dtype=torch.long)
    held_out_crops = load_crops(aligned_dir, held_out["path"].tolist()) if len(held_out) else None
    stopping = EarlyStopping(params.patience, params.min_delta)
    validations: list[dict] = []
    best_weights: dict | None = None

    model = build_backbone(params.backbone, embedding_size=params.embedding_size)
    model = model.to(memory_format=torch.channels_last)
    head = build_head(params.head.type, params.embedding_size, num_classes,
                      **params.head.model_dump(exclude={"type"}))
    optimizer = build_optimizer(params, [model, head])
    steps_per_epoch = len(faces) // params.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} faces are fewer than one batch of {params.batch_size}")
    total_steps = steps_per_epoch * params.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(params, steps_per_epoch))

    fingerprint = training_fingerprint(params, faces)
    state_path = Path(state_path) if state_path else None
    history, step, trained_seconds = [], 0, 0.0
    if state_path and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            head.load_state_dict(state["head"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            augment_generator.set_state(state["augment_rng"])
            torch.set_rng_state(state["torch_rng"])
            history, step, trained_seconds = state["history"], state["step"], state["seconds"]
            validations, best_weights = state["validations"], state["best_weights"]
            stopping.load_state_dict(state["stopping"])
            log.info("resuming from %s at step %d of %d", state_path, step, total_steps)
        else:
            log.warning("%s holds the state of other parameters or faces: starting afresh", state_path)

    bf16 = use_bf16(params.precision)
    started = time.perf_counter() - trained_seconds
    model.train()
    head.train()
    progress = tqdm(total=total_steps, initial=step, desc=f"train {params.backbone}", unit="step", mininterval=10)
    while step < total_steps and not stopping.should_stop:
        epoch, batch_index = divmod(step, steps_per_epoch)
        index = epoch_order(params.seed, epoch, len(faces))[batch_index * params.batch_size:
                                                            (batch_index + 1) * params.batch_size]
        images = normalise(augment(crops[index], augment_generator)).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(images)
        logits = head(embeddings.float(), labels[index])
        loss = F.cross_entropy(logits, labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if params.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([*model.parameters(), *head.parameters()], params.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        accuracy = (logits.argmax(1) == labels[index]).float().mean().item()
        history.append({"step": step, "epoch": epoch + (batch_index + 1) / steps_per_epoch,
                        "loss": loss.item(), "train_accuracy": accuracy,
                        "lr": optimizer.param_groups[0]["lr"]})
        progress.update()
        progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
        if held_out_crops is not None and step % steps_per_epoch == 0:
            score = validation_score(model, held_out_crops, held_out["identity"].to_numpy(), params.validation_metric)
            improved = stopping.update(score, step)
            if improved:
                best_weights = {"model": _copy(model.state_dict()), "head": _copy(head.state_dict())}
            validations.append({"step": step, "epoch": step / steps_per_epoch, params.validation_metric: score,
                                "best": stopping.best})
            log.info("epoch %d: validation %s %.4f (best %.4f at step %d)", epoch + 1, params.validation_metric,
                     score, stopping.best, stopping.best_step)
        if state_path and params.checkpoint_every and step % params.checkpoint_every == 0 and step < total_steps:
            _save_state(state_path, fingerprint=fingerprint, step=step, history=history,
                        seconds=time.perf_counter() - started, model=model.state_dict(), head=head.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        augment_rng=augment_generator.get_state(), torch_rng=torch.get_rng_state(),
                        validations=validations, best_weights=best_weights, stopping=stopping.state_dict())
    progress.close()
    seconds = time.perf_counter() - started
    if stopping.should_stop:
        log.info("early stop at step %d: no validation gain in %d epochs", step, params.patience)
    if best_weights is not None:  # model selection: the best validated weights, not the last
        model.load_state_dict(best_weights["model"])
        head.load_state_dict(best_weights["head"])
    save_checkpoint(checkpoint_path, model, params.backbone, params.embedding_size,
                    identities=sorted(faces["identity"].unique()), head=head)
    if state_path:
        state_path.unlink(missing_ok=True)
    last_epoch = pd.DataFrame(history[-steps_per_epoch:])
    summary = {
        "backbone": params.backbone,
        "identities": num_classes,
        "faces": len(faces),
        "epochs": params.epochs,
        "steps": step,
        "final_loss": round(float(last_epoch["loss"].mean()), 4),
        "final_train_accuracy": round(float(last_epoch["train_accuracy"].mean()), 4),
        "train_seconds": round(seconds, 1),
        "samples_per_second": round(step * params.batch_size / seconds, 2),
    }
    if validations:
        summary.update({f"validation_{params.validation_metric}": stopping.best, "best_step": stopping.best_step,
                        "stopped_early": stopping.should_stop})
    log.info("trained in %.0f s: %s", seconds, summary)
    return TrainResult(history=pd.DataFrame(history), validation=pd.DataFrame(validations), summary=summary)


def _copy(state: dict) -> dict:
    return {key: value.detach().clone() for key, value in state.items()}
