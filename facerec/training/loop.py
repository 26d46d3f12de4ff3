"""The training loop: a backbone plus a margin head over aligned identity folders.

SGD or AdamW (no weight decay on norms and biases), linear warm-up then a polynomial,
cosine or step schedule stepped per iteration, optional gradient clipping, bf16 autocast
on CPU, one log row per step for ``dvc plots``. Batches and their augmentation come from
``facerec.training.batches`` (DataLoader workers).
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from facerec.config import TrainParams
from facerec.data.aligned import normalise
from facerec.data.training_faces import load_training_crops
from facerec.models.backbones import build_backbone
from facerec.models.checkpoints import save_checkpoint
from facerec.models.heads import build_head
from facerec.models.partial_fc import PartialFC, shard_bounds
from facerec.runtime.hardware import autocast_dtype, needs_grad_scaler
from facerec.runtime.io import atomic_path
from facerec.training.batches import training_batches
from facerec.training.distributed import broadcast_float, init_from_environment, training_device
from facerec.training.selection import EarlyStopping, hold_out_identities, validation_score

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per step
    validation: pd.DataFrame  # one row per validation: step, epoch, metric (its name), score, best so far
    summary: dict  # what the run produced: a pure function of its inputs
    timings: dict  # how long it took: varies between runs, kept apart from the summary


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
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
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
    """What a saved training state belongs to: every parameter that can change the result
    (not ``TrainParams.RESULT_NEUTRAL``), the faces, and the number of processes."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(params.model_dump_json(exclude=set(params.RESULT_NEUTRAL)).encode())
    digest.update(str(world_size).encode())
    digest.update(pd.util.hash_pandas_object(faces[["path", "label"]], index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _rank_path(path: Path, rank: int, world_size: int) -> Path:
    """Each rank of a multi-process run keeps its own state (its shard of the centres, its RNG)."""
    return path if world_size == 1 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


@dataclass
class _Learner:
    """The modules and optimiser state every step changes, and so what a resume restores."""

    model: nn.Module
    forward: Callable[..., torch.Tensor]  # the model as called: wrapped in DDP and/or compiled
    head: nn.Module
    criterion: PartialFC
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: torch.dtype | None
    grad_clip: float | None

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
        """One optimiser step on a batch; (loss, closed-set accuracy)."""
        with torch.autocast(images.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            embeddings = self.forward(images)
        loss, accuracy = self.criterion(embeddings, labels)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([*self.model.parameters(), *self.head.parameters()], self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), accuracy.item()

    def best_weights(self) -> dict:
        """The weights model selection keeps: the backbone and every class centre."""
        return {"model": _copy(self.model.state_dict()), "head": self.criterion.full_state_dict()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])


def _build_learner(params: TrainParams, num_classes: int, steps_per_epoch: int, device: torch.device,
                   rank: int, world_size: int) -> _Learner:
    model = build_backbone(params.backbone, embedding_size=params.embedding_size, **params.backbone_options())
    # Module.to takes device and memory_format together; torch's overload stubs list them apart.
    model = model.to(device=device, memory_format=_memory_format(params))  # type: ignore[call-overload]
    shard_start, shard_end = shard_bounds(num_classes, rank, world_size)
    head = build_head(params.embedding_size, shard_end - shard_start, params.head).to(device)
    optimizer = build_optimizer(params, [model, head])
    autocast = autocast_dtype(params.precision, device)
    trained = DDP(model) if world_size > 1 else model
    return _Learner(model=model, forward=torch.compile(trained) if params.compile else trained, head=head,
                    criterion=PartialFC(head, num_classes, params.sample_rate), optimizer=optimizer,
                    scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(params, steps_per_epoch)),
                    scaler=torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(autocast)),
                    autocast=autocast, grad_clip=params.grad_clip)


def _memory_format(params: TrainParams) -> torch.memory_format:
    return torch.channels_last if params.channels_last else torch.contiguous_format


@dataclass
class _Progress:
    """How far the run has come: saved with the learner so that a resume continues exactly."""

    stopping: EarlyStopping
    step: int = 0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    validations: list[dict] = field(default_factory=list)
    best_weights: dict | None = None

    def state_dict(self) -> dict:
        return {"step": self.step, "seconds": self.seconds, "history": self.history,
                "validations": self.validations, "best_weights": self.best_weights,
                "stopping": self.stopping.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.seconds, self.history = state["step"], state["seconds"], state["history"]
        self.validations, self.best_weights = state["validations"], state["best_weights"]
        self.stopping.load_state_dict(state["stopping"])


def _save_state(path: Path, fingerprint: str, learner: _Learner, progress: _Progress) -> None:
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fingerprint, **learner.state_dict(), **progress.state_dict()}, tmp)


def _resume(path: Path, fingerprint: str, learner: _Learner, progress: _Progress) -> bool:
    """Load the state at ``path`` if it belongs to this run; True when it did."""
    if not path.is_file():
        return False
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["fingerprint"] != fingerprint:
        log.warning("%s holds the state of other parameters or faces: starting afresh", path)
        return False
    learner.load_state_dict(state)
    progress.load_state_dict(state)
    return True


def _split_faces(aligned: pd.DataFrame, params: TrainParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(labelled training faces, held-out validation faces)."""
    selected = select_training_faces(aligned, params.min_images_per_identity)
    faces, held_out = hold_out_identities(selected.drop(columns="label"), params.validation_identities, params.seed)
    return select_training_faces(faces, params.min_images_per_identity), held_out


def train_model(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                checkpoint_path: str | Path | None, state_path: str | Path | None = None,
                on_validation: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train ``params.backbone`` with the margin head of ``params.head``; save the checkpoint
    (unless ``checkpoint_path`` is None); return the history.

    ``on_validation(epoch, score)`` is called after each validation on the held-out
    identities; an exception it raises (a tuning trial being pruned) ends the run there.

    With ``state_path``, the whole training state (model, head, optimiser, scheduler, grad
    scaler, RNG state, step, history, validations and early-stopping state) is written there
    atomically every ``checkpoint_every`` steps; a run that finds a state of the same
    parameters, faces and world size there resumes from it and ends with exactly the weights
    of an uninterrupted run. The state is removed at the end.

    Launched by torchrun with several processes, each trains on its slice of every global
    batch (``batch_size`` per process) under DDP, holds its shard of the class centres
    (``facerec.models.partial_fc``), and rank 0 validates and writes the checkpoint.
    """
    torch.set_num_threads(params.num_threads)
    device = training_device(params.device)
    rank, world_size = init_from_environment(device)
    seed_everything(params.seed)
    faces, held_out = _split_faces(aligned, params)
    num_classes = int(faces["label"].max()) + 1
    log.info("training %s on %d faces of %d identities (%s, %d process%s); %d faces of %d identities held out "
             "for validation", params.backbone, len(faces), num_classes, device, world_size,
             "es" if world_size > 1 else "", len(held_out), held_out["identity"].nunique())
    crops = load_training_crops(aligned_dir, faces["path"].tolist())
    labels = torch.tensor(faces["label"].to_numpy(), dtype=torch.long)
    held_out_crops = (load_training_crops(aligned_dir, held_out["path"].tolist()) if len(held_out) and rank == 0
                      else None)
    global_batch = params.batch_size * world_size
    steps_per_epoch = len(faces) // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} faces are fewer than one batch of {global_batch}")
    total_steps = steps_per_epoch * params.epochs
    learner = _build_learner(params, num_classes, steps_per_epoch, device, rank, world_size)
    progress = _Progress(EarlyStopping(params.patience, params.min_delta))
    fingerprint = training_fingerprint(params, faces, world_size)
    state_path = _rank_path(Path(state_path), rank, world_size) if state_path else None
    if state_path and _resume(state_path, fingerprint, learner, progress):
        log.info("resuming from %s at step %d of %d", state_path, progress.step, total_steps)

    def validate(epoch: int) -> None:
        # Rank 0 scores; every rank takes the same decision from its score.
        local_score = 0.0
        if rank == 0:
            # Validation runs only with validation_identities > 0, which holds out faces: rank 0 loaded them.
            assert held_out_crops is not None
            local_score = validation_score(learner.model, held_out_crops, held_out["identity"].to_numpy(),
                                           params.validation_metric)
        score = broadcast_float(local_score)
        stopping = progress.stopping
        if stopping.update(score, progress.step):
            progress.best_weights = learner.best_weights()
        progress.validations.append({"step": progress.step, "epoch": progress.step / steps_per_epoch,
                                     "metric": params.validation_metric, "score": score, "best": stopping.best})
        log.info("epoch %d: validation %s %.4f (best %.4f at step %d)", epoch + 1, params.validation_metric,
                 score, stopping.best, stopping.best_step)
        if on_validation is not None:
            on_validation(epoch, score)

    started = time.perf_counter() - progress.seconds
    learner.model.train()
    learner.head.train()
    bar = tqdm(total=total_steps, initial=progress.step, desc=f"train {params.backbone}", unit="step",
               mininterval=10, disable=rank != 0)
    batches = training_batches(crops, labels, params.augment_params(), params.batch_size, steps_per_epoch,
                               params.seed, progress.step, total_steps, params.workers, rank, world_size)
    for images, batch_labels in batches:
        if progress.stopping.should_stop:
            break
        epoch, batch_index = divmod(progress.step, steps_per_epoch)
        images = normalise(images.to(device, non_blocking=True)).contiguous(memory_format=_memory_format(params))
        loss, accuracy = learner.step(images, batch_labels.to(device, non_blocking=True))
        progress.step += 1
        progress.history.append({"step": progress.step, "epoch": epoch + (batch_index + 1) / steps_per_epoch,
                                 "loss": loss, "train_accuracy": accuracy,
                                 "lr": learner.optimizer.param_groups[0]["lr"]})
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch + 1, refresh=False)
        if params.validation_identities and progress.step % steps_per_epoch == 0:
            validate(epoch)
        if (state_path and params.checkpoint_every and progress.step % params.checkpoint_every == 0
                and progress.step < total_steps):
            progress.seconds = time.perf_counter() - started
            _save_state(state_path, fingerprint, learner, progress)
    bar.close()
    progress.seconds = time.perf_counter() - started
    if progress.stopping.should_stop:
        log.info("early stop at step %d: no validation gain in %d epochs", progress.step, params.patience)
    # Model selection: the best validated weights, not the last. Every rank takes part in
    # gathering the sharded centres; rank 0 writes them.
    weights = progress.best_weights or learner.best_weights()
    if rank == 0 and checkpoint_path is not None:
        learner.model.load_state_dict(weights["model"])
        save_checkpoint(checkpoint_path, learner.model, params.backbone, params.embedding_size,
                        identities=sorted(faces["identity"].unique()), head_state=weights["head"],
                        options=params.backbone_options())
    if state_path:
        state_path.unlink(missing_ok=True)
    summary = _summary(params, progress, faces, num_classes, steps_per_epoch, world_size)
    timings = {"train_seconds": round(progress.seconds, 1),
               "samples_per_second": round(progress.step * params.batch_size * world_size / progress.seconds, 2)}
    log.info("trained in %.0f s: %s", progress.seconds, summary)
    return TrainResult(history=pd.DataFrame(progress.history), validation=pd.DataFrame(progress.validations),
                       summary=summary, timings=timings)


def _summary(params: TrainParams, progress: _Progress, faces: pd.DataFrame, num_classes: int,
             steps_per_epoch: int, world_size: int) -> dict:
    last_epoch = pd.DataFrame(progress.history[-steps_per_epoch:])
    summary = {
        "backbone": params.backbone,
        "identities": num_classes,
        "faces": len(faces),
        "epochs": params.epochs,
        "steps": progress.step,
        "processes": world_size,
        "final_loss": round(float(last_epoch["loss"].mean()), 4),
        "final_train_accuracy": round(float(last_epoch["train_accuracy"].mean()), 4),
    }
    if progress.validations:
        summary.update({f"validation_{params.validation_metric}": progress.stopping.best,
                        "best_step": progress.stopping.best_step, "stopped_early": progress.stopping.should_stop})
    return summary


def _copy(state: dict) -> dict:
    return {key: value.detach().clone() for key, value in state.items()}
