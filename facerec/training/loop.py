"""The training loop: a backbone plus a margin head over aligned identity folders.

SGD or AdamW (no weight decay on norms and biases), linear warm-up then a polynomial,
cosine or step schedule stepped per iteration, optional gradient clipping, bf16 autocast
on CPU, one log row per step for ``dvc plots``. Batches and their augmentation come from
``facerec.training.batches`` (DataLoader workers).

Transfer from a published model: the backbone may start from its weights (``init_from``,
with a frozen or slower backbone at first and a head imprinted from them), learn a
teacher's embeddings beside the margin loss (``teacher``, ``distill``), and end with a
linear map fitted on the training people (``adaptation``).
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
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from facerec.config import TrainParams
from facerec.data.aligned import normalise
from facerec.data.training_faces import load_training_crops
from facerec.evaluation.embedding import embed_crops
from facerec.models.adaptation import EmbeddingMap
from facerec.models.backbones import build_backbone
from facerec.models.checkpoints import save_checkpoint
from facerec.models.heads import build_head
from facerec.models.partial_fc import PartialFC, shard_bounds
from facerec.runtime.hardware import autocast_dtype, needs_grad_scaler
from facerec.runtime.io import atomic_path
from facerec.runtime.memory import kept_freed_memory
from facerec.training.adaptation import fit_whitening
from facerec.training.batches import training_batches
from facerec.training.distillation import DistillationLoss
from facerec.training.distributed import broadcast_float, init_from_environment, training_device
from facerec.training.selection import (
    VALIDATION_BATCH,
    EarlyStopping,
    embeddings_score,
    hold_out_identities,
    validation_embeddings,
    validation_score,
)
from facerec.training.transfer import class_means

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
    """Two groups per module, in order (so that each module's learning rate can follow its own
    schedule): weight decay on weight matrices and kernels only, since decaying norm scales,
    biases and PReLU slopes (every tensor of one dimension) only pulls them towards 0."""
    groups = []
    for module in modules:
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for parameter in module.parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups += [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return groups


def build_optimizer(params: TrainParams, modules: list[nn.Module]) -> torch.optim.Optimizer:
    """The optimiser over ``modules``' parameters, two groups per module (``parameter_groups``)."""
    groups = parameter_groups(modules, params.weight_decay)
    # fused: one kernel over every tensor (CPU and CUDA); SGD's updates are foreach's bit for bit.
    if params.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=params.lr, betas=(params.momentum, 0.999), fused=True)
    return torch.optim.SGD(groups, lr=params.lr, momentum=params.momentum, fused=True)


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


def _frozen_steps(params: TrainParams, steps_per_epoch: int) -> int:
    return int(params.finetune.frozen_epochs * steps_per_epoch)


def backbone_lr_multiplier(params: TrainParams, steps_per_epoch: int) -> Callable[[int], float]:
    """The backbone's LR multiplier: 0 for the first ``finetune.frozen_epochs`` (the new head
    learns alone), then ``finetune.backbone_lr_scale`` × the schedule's."""
    schedule = lr_multiplier(params, steps_per_epoch)
    frozen = _frozen_steps(params, steps_per_epoch)
    scale = params.finetune.backbone_lr_scale
    return lambda step: 0.0 if step < frozen else scale * schedule(step)


@dataclass
class _Learner:
    """The modules and optimiser state every step changes, and so what a resume restores."""

    model: nn.Module
    forward: Callable[..., torch.Tensor]  # the model as called: wrapped in DDP and/or compiled
    head: nn.Module
    criterion: PartialFC
    distillation: DistillationLoss | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: torch.dtype | None
    grad_clip: float | None
    margin_weight: float = 1.0
    distill_weight: float = 1.0
    frozen_steps: int = 0  # the first steps, while finetune.frozen_epochs hold the backbone (its lr is 0)

    def step(self, images: torch.Tensor, labels: torch.Tensor,
             teacher: torch.Tensor | None = None) -> tuple[float, float]:
        """One optimiser step on a batch (with the teacher's embeddings of its faces when
        distilling); (loss, closed-set accuracy: NaN without the margin loss).

        While the backbone is frozen its forward records no graph (about a third of a full
        step's time): nothing flows back into it, so the optimiser gives it no momentum and no
        weight decay either, and it starts moving from rest when its lr rises. It runs eagerly
        (not compiled: a graph without gradients would be a second compilation) and outside
        DDP: its gradients need no averaging, and its batch-norm statistics stay per process,
        as DDP keeps them (rank 0's are the ones saved)."""
        frozen = self.scheduler.last_epoch < self.frozen_steps  # the scheduler counts the steps taken
        with (torch.autocast(images.device.type, dtype=self.autocast, enabled=self.autocast is not None),
              torch.set_grad_enabled(not frozen)):
            embeddings = (self.model if frozen else self.forward)(images)
        loss = embeddings.new_zeros((), dtype=torch.float32)
        accuracy = torch.tensor(float("nan"))
        if self.margin_weight > 0:
            margin_loss, accuracy = self.criterion(embeddings, labels)
            loss = loss + self.margin_weight * margin_loss
        if self.distillation is not None:
            assert teacher is not None  # train_model passes the teacher's rows whenever it distils
            loss = loss + self.distill_weight * self.distillation(embeddings, teacher)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_([*self.model.parameters(), *self.head.parameters(),
                                            *self._distillation_parameters()], self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.item(), accuracy.item()

    def _distillation_parameters(self) -> list[nn.Parameter]:
        return list(self.distillation.parameters()) if self.distillation is not None else []

    def best_weights(self) -> dict:
        """The weights model selection keeps: the backbone and every class centre."""
        return {"model": _copy(self.model.state_dict()), "head": self.criterion.full_state_dict()}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "head": self.head.state_dict(),
                "distillation": self.distillation.state_dict() if self.distillation is not None else {},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.head.load_state_dict(state["head"])
        if self.distillation is not None:
            self.distillation.load_state_dict(state["distillation"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])


def _build_learner(params: TrainParams, num_classes: int, steps_per_epoch: int, device: torch.device,
                   rank: int, world_size: int, initial_weights: dict | None, teacher_size: int | None) -> _Learner:
    model = _backbone(params, initial_weights, device)
    shard_start, shard_end = shard_bounds(num_classes, rank, world_size)
    head = build_head(params.embedding_size, shard_end - shard_start, params.head).to(device)
    distillation = (DistillationLoss(params.distill.loss, params.embedding_size, teacher_size).to(device)
                    if teacher_size is not None else None)
    optimizer = build_optimizer(params, [model, head, *([distillation] if distillation is not None else [])])
    # The backbone's two groups come first (parameter_groups keeps the modules' order).
    schedules = [backbone_lr_multiplier(params, steps_per_epoch)] * 2 + [lr_multiplier(params, steps_per_epoch)] * (
        len(optimizer.param_groups) - 2)
    autocast = autocast_dtype(params.precision, device)
    trained = DDP(model) if world_size > 1 else model
    return _Learner(model=model, forward=torch.compile(trained) if params.compile else trained, head=head,
                    criterion=PartialFC(head, num_classes, params.sample_rate), distillation=distillation,
                    optimizer=optimizer, scheduler=torch.optim.lr_scheduler.LambdaLR(optimizer, schedules),
                    scaler=torch.amp.GradScaler(device.type, enabled=needs_grad_scaler(autocast)),
                    autocast=autocast, grad_clip=params.grad_clip, margin_weight=params.distill.margin_weight,
                    distill_weight=params.distill.weight, frozen_steps=_frozen_steps(params, steps_per_epoch))


def _backbone(params: TrainParams, initial_weights: dict | None, device: torch.device) -> nn.Module:
    """``params.backbone`` with ``initial_weights`` (random ones without), on ``device``, in
    the training's memory format."""
    model = build_backbone(params.backbone, embedding_size=params.embedding_size, **params.backbone_options())
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    # Module.to takes device and memory_format together; torch's overload stubs list them apart.
    return model.to(device=device, memory_format=_memory_format(params))  # type: ignore[call-overload]


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

    def epoch_figures(self, epoch: int, steps_per_epoch: int, metric: str) -> dict[str, float]:
        """The run's figures after ``epoch`` epochs (0: the started-from weights): the epoch's
        mean loss and training accuracy and its last learning rate, and the validation at its
        end when there was one."""
        figures: dict[str, float] = {}
        steps = [row for row in self.history if (epoch - 1) * steps_per_epoch < row["step"] <= epoch * steps_per_epoch]
        if steps:
            figures = {"loss": float(np.mean([row["loss"] for row in steps])),
                       "train_accuracy": float(np.mean([row["train_accuracy"] for row in steps])),
                       "lr": steps[-1]["lr"]}
        figures.update({f"validation_{metric}": row["score"] for row in self.validations
                        if row["step"] == epoch * steps_per_epoch})
        return figures


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


@dataclass(frozen=True)
class StartingPoint:
    """What a training from published weights computes before its first step, whatever its
    head, margin or learning rate: the started-from backbone's class means (the imprinted
    head) and its validation score. Computed once by ``starting_point``; every ``train_model``
    handed it skips that work and ends bit for bit as if it had done it."""

    key: str  # what it was computed from (_start_key): a training of other faces or weights refuses it
    class_means: torch.Tensor | None  # C×D, every class; None unless finetune.head_init is class_means
    validation: float | None  # None without validation people


@kept_freed_memory()  # each batch's activations reuse the last one's memory (facerec.runtime.memory)
def starting_point(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                   initial_weights: dict) -> StartingPoint:
    """The ``StartingPoint`` of trainings of ``params`` (but any head, margin, learning rate or
    schedule) from ``initial_weights`` on ``aligned``: the same faces, model and arithmetic as
    ``train_model`` uses for them. One process (not under torchrun)."""
    torch.set_num_threads(params.num_threads)
    faces, held_out = _split_faces(aligned, params)
    model = _backbone(params, initial_weights, training_device(params.device))
    means = None
    if params.finetune.head_init == "class_means":
        embeddings = embed_crops(model, load_training_crops(aligned_dir, faces["path"].tolist()), EMBED_BATCH,
                                 flip=False)
        means = class_means(embeddings, faces["label"].to_numpy(), int(faces["label"].max()) + 1)
    validation = None
    if params.validation_identities:
        validation = validation_score(model, load_training_crops(aligned_dir, held_out["path"].tolist()),
                                      held_out["identity"].to_numpy(), params.validation_metric)
    return StartingPoint(_start_key(params, faces, held_out, initial_weights), means, validation)


def _start_key(params: TrainParams, faces: pd.DataFrame, held_out: pd.DataFrame, initial_weights: dict | None) -> str:
    """A digest of everything a ``StartingPoint`` depends on: the faces and their labels, the
    validation people, the weights, and the settings that shape the embeddings and the score
    (threads too: oneDNN sums in another order on another number of threads)."""
    digest = hashlib.blake2b(digest_size=16)
    settings = params.model_dump(mode="json", include={"backbone", "embedding_size", "stem_stride", "num_threads",
                                                       "device", "validation_metric"})
    digest.update(repr((sorted(settings.items()), params.finetune.head_init)).encode())
    for table, columns in ((faces, ["path", "label"]), (held_out, ["path", "identity"])):
        digest.update(pd.util.hash_pandas_object(table[columns], index=False).to_numpy().tobytes())
    for name, tensor in sorted((initial_weights or {}).items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@kept_freed_memory()  # each step's activations reuse the last step's memory (facerec.runtime.memory)
def train_model(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                checkpoint_path: str | Path | None, state_path: str | Path | None = None,
                on_validation: Callable[[int, float], None] | None = None,
                initial_weights: dict | None = None, teacher: pd.DataFrame | None = None,
                start: StartingPoint | None = None,
                on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
    """Train ``params.backbone`` with the margin head of ``params.head``; save the checkpoint
    (unless ``checkpoint_path`` is None); return the history.

    ``initial_weights`` (``facerec.training.transfer.starting_weights``) is the backbone's
    state_dict to start from; the started-from weights are validated before the first step
    and are kept if no epoch beats them. ``teacher`` holds the teacher's embedding of each
    training face (index: the face's path in ``aligned``), learnt as ``params.distill`` says.
    ``start`` (``starting_point``) holds the imprinted head and the started-from weights'
    validation, computed once for trainings that differ only in the head, margin or learning
    rate (a tuning study's trials): the run skips that work and ends exactly as it would have.

    ``on_validation(epoch, score)`` is called after each epoch's validation on the held-out
    identities; an exception it raises (a tuning trial being pruned) ends the run there.
    ``on_epoch(epoch, figures)`` (rank 0 only; DVCLive's log) gets ``_Progress.epoch_figures``
    after each epoch, and for epoch 0 the started-from weights' validation; a resumed run
    gives it the epochs it had done first, so its log is whole.

    With ``state_path``, the whole training state (model, head, optimiser, scheduler, grad
    scaler, RNG state, step, history, validations and early-stopping state) is written there
    atomically every ``checkpoint_every`` steps; a run that finds a state of the same
    parameters, faces and world size there resumes from it and ends with exactly the weights
    of an uninterrupted run. The state is removed at the end.

    Launched by torchrun with several processes, each trains on its slice of every global
    batch (``batch_size`` per process) under DDP, holds its shard of the class centres
    (``facerec.models.partial_fc``), and rank 0 validates and writes the checkpoint.
    """
    called = time.perf_counter()
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
    targets = _teacher_rows(teacher, faces) if params.teacher is not None else None
    held_out_crops = (load_training_crops(aligned_dir, held_out["path"].tolist()) if len(held_out) and rank == 0
                      else None)
    global_batch = params.batch_size * world_size
    steps_per_epoch = len(faces) // global_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} faces are fewer than one batch of {global_batch}")
    total_steps = steps_per_epoch * params.epochs
    if start is not None and start.key != _start_key(params, faces, held_out, initial_weights):
        raise ValueError("the starting point was computed from other faces, weights or embedding settings "
                         "than this training's: compute it with this training's (starting_point)")
    learner = _build_learner(params, num_classes, steps_per_epoch, device, rank, world_size, initial_weights,
                             None if targets is None else targets.shape[1])
    progress = _Progress(EarlyStopping(params.patience, params.min_delta))
    kept = _KeptEmbeddings()
    fingerprint = training_fingerprint(params, faces, world_size)
    state_path = _rank_path(Path(state_path), rank, world_size) if state_path else None
    resumed = state_path is not None and _resume(state_path, fingerprint, learner, progress)
    if resumed:
        log.info("resuming from %s at step %d of %d", state_path, progress.step, total_steps)

    def score(model: nn.Module) -> tuple[float, np.ndarray | None]:
        """(the validation score, rank 0's embeddings of the held-out faces)."""
        # Rank 0 scores; every rank takes the same decision from its score.
        local_score, embeddings = 0.0, None
        if rank == 0:
            # Validation runs only with validation_identities > 0, which holds out faces: rank 0 loaded them.
            assert held_out_crops is not None
            embeddings = validation_embeddings(model, held_out_crops)
            learner.model.to(memory_format=_memory_format(params))  # embed_crops leaves it channels_last
            local_score = embeddings_score(embeddings, held_out["identity"].to_numpy(), params.validation_metric)
        return broadcast_float(local_score), embeddings

    def validate(epoch: float, known: float | None = None) -> float:
        """Score the current weights (``known``: their score, computed before) and keep them if best."""
        value, embeddings = score(learner.model) if known is None else (known, None)
        stopping = progress.stopping
        if stopping.update(value, progress.step):
            progress.best_weights = learner.best_weights()
            if embeddings is not None:
                kept.add(progress.step, "held_out", embeddings)
        progress.validations.append({"step": progress.step, "epoch": progress.step / steps_per_epoch,
                                     "metric": params.validation_metric, "score": value, "best": stopping.best})
        log.info("epoch %g: validation %s %.4f (best %.4f at step %d)", epoch, params.validation_metric,
                 value, stopping.best, stopping.best_step)
        return value

    if not resumed and initial_weights is not None:
        if params.finetune.head_init == "class_means" and total_steps:
            if start is not None and start.class_means is not None:
                means = start.class_means
            else:
                embeddings = kept.add(0, "train", embed_crops(learner.model, crops, EMBED_BATCH, flip=False))
                learner.model.to(memory_format=_memory_format(params))  # embed_crops leaves it channels_last
                means = class_means(embeddings, faces["label"].to_numpy(), num_classes)
            _imprint_head(learner, means, rank, world_size)
        if params.validation_identities:
            validate(0, start.validation if start is not None else None)  # the started-from weights are a candidate

    def epoch_done(epoch: int) -> None:
        figures = progress.epoch_figures(epoch, steps_per_epoch, params.validation_metric)
        if on_epoch is not None and rank == 0 and figures:
            on_epoch(epoch, figures)

    for done in range(progress.step // steps_per_epoch + 1):  # epoch 0, and those a resumed run had done
        epoch_done(done)

    started = time.perf_counter() - progress.seconds
    learner.model.train()
    learner.head.train()
    bar = tqdm(total=total_steps, initial=progress.step, desc=f"train {params.backbone}", unit="step",
               mininterval=10, disable=rank != 0)
    # The batches carry each face's index, which gives its label and its teacher embedding.
    indices = torch.arange(len(faces))
    batches = training_batches(crops, indices, params.augment_params(), params.batch_size, steps_per_epoch,
                               params.seed, progress.step, total_steps, params.workers, rank, world_size)
    for images, batch_indices in batches:
        if progress.stopping.should_stop:
            break
        epoch, batch_index = divmod(progress.step, steps_per_epoch)
        images = normalise(images.to(device, non_blocking=True)).contiguous(memory_format=_memory_format(params))
        loss, accuracy = learner.step(images, labels[batch_indices].to(device, non_blocking=True),
                                      None if targets is None else targets[batch_indices].to(device))
        progress.step += 1
        progress.history.append({"step": progress.step, "epoch": epoch + (batch_index + 1) / steps_per_epoch,
                                 "loss": loss, "train_accuracy": accuracy,
                                 "lr": learner.optimizer.param_groups[HEAD_GROUP]["lr"]})
        bar.update()
        bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch + 1, refresh=False)
        if progress.step % steps_per_epoch == 0:
            if params.validation_identities:
                validate(epoch + 1)
            epoch_done(epoch + 1)
            if params.validation_identities and on_validation is not None:
                on_validation(epoch, progress.validations[-1]["score"])
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
    learner.model.load_state_dict(weights["model"])
    adaptation: dict = {}
    if params.adaptation == "whitening" and rank == 0:
        final_step = progress.stopping.best_step if progress.best_weights is not None else progress.step
        adaptation = _fit_adaptation(learner.model, crops, faces["identity"].to_numpy(), lambda model: score(model)[0],
                                     params.validation_identities > 0, progress.stopping.best, kept.made_at(final_step),
                                     held_out["identity"].to_numpy(), params.validation_metric)
    if rank == 0 and checkpoint_path is not None:
        save_checkpoint(checkpoint_path, learner.model, params.backbone, params.embedding_size,
                        identities=sorted(faces["identity"].unique()), head_state=weights["head"],
                        options=params.backbone_options(), adaptation=adaptation.get("map"))
    if state_path:
        state_path.unlink(missing_ok=True)
    summary = _summary(params, progress, faces, num_classes, steps_per_epoch, world_size)
    summary.update({key: value for key, value in adaptation.items() if key != "map"})
    # train_seconds: the steps (and their validations) alone; total_seconds: the whole call,
    # loading, imprinting and the adaptation fit included.
    timings = {"train_seconds": round(progress.seconds, 1),
               "total_seconds": round(time.perf_counter() - called, 1),
               "samples_per_second": round(progress.step * params.batch_size * world_size / progress.seconds, 2)
               if progress.step else None}
    log.info("trained in %.0f s: %s", progress.seconds, summary)
    return TrainResult(history=pd.DataFrame(progress.history, columns=HISTORY_COLUMNS),
                       validation=pd.DataFrame(progress.validations), summary=summary, timings=timings)


HISTORY_COLUMNS = ["step", "epoch", "loss", "train_accuracy", "lr"]
HEAD_GROUP = 2  # the head's weights' group (the backbone's two come first): the schedule's lr, never frozen
EMBED_BATCH = 128  # faces per forward pass when the loop embeds the training faces (no gradient)


def _teacher_rows(teacher: pd.DataFrame | None, faces: pd.DataFrame) -> torch.Tensor:
    """The teacher's embedding of each training face, in ``faces``' order."""
    if teacher is None:
        raise ValueError("train.teacher is set but no teacher embeddings were given: run the teacher stage")
    missing = faces.loc[~faces["path"].isin(teacher.index), "path"].tolist()
    if missing:
        raise ValueError(f"the teacher's embeddings lack {len(missing)} training faces ({missing[:3]} …): "
                         "rerun the teacher stage (dvc repro teacher)")
    return torch.from_numpy(teacher.loc[faces["path"]].to_numpy(np.float32))


def _imprint_head(learner: _Learner, means: torch.Tensor, rank: int, world_size: int) -> None:
    """Start each class centre at the person's mean embedding by the started-from backbone
    (``means``: C×D, every class; this rank takes its shard)."""
    start, end = shard_bounds(len(means), rank, world_size)
    with torch.no_grad():
        learner.head.get_parameter("weight").copy_(means[start:end])


@dataclass
class _KeptEmbeddings:
    """Embeddings by the weights of one step, the best so far (``train``: the training faces,
    ``held_out``: the validation people's), so that the adaptation fit, given those weights,
    does not embed the same faces again."""

    step: int = -1
    views: dict[str, np.ndarray] = field(default_factory=dict)

    def add(self, step: int, name: str, embeddings: np.ndarray) -> np.ndarray:
        if step != self.step:
            self.step, self.views = step, {}
        self.views[name] = embeddings
        return embeddings

    def made_at(self, step: int) -> dict[str, np.ndarray]:
        return self.views if step == self.step else {}


def _fit_adaptation(model: nn.Module, crops: torch.Tensor, identities: np.ndarray, score: Callable[[nn.Module], float],
                    validated: bool, score_without: float, embedded: dict[str, np.ndarray],
                    held_out_identities: np.ndarray, metric: str) -> dict:
    """Within-class whitening fitted on the training faces and their mirror images (each a
    sample of its person); kept when the validation people score higher with it (always
    without validation people). ``embedded`` holds what ``model`` has already embedded
    (``_KeptEmbeddings``). Returns the summary's record, with the map under ``map`` when it
    is kept."""
    unflipped = embedded["train"] if "train" in embedded else embed_crops(model, crops, EMBED_BATCH, flip=False)
    views = np.concatenate([unflipped, embed_crops(model, crops.flip(-1), EMBED_BATCH, flip=False)])
    mean, projection = fit_whitening(views, np.concatenate([identities, identities]))
    adapted = EmbeddingMap(model, mean, projection)
    if not validated:
        return {"adaptation": "whitening", "map": adapted.state()}
    if "held_out" in embedded:
        score_with = embeddings_score(_mapped(embedded["held_out"], adapted), held_out_identities, metric)
    else:
        score_with = score(adapted)
    record = {"validation_without_adaptation": score_without, "validation_with_adaptation": score_with}
    log.info("whitening: validation %.4f with the map, %.4f without", score_with, score_without)
    if score_with > score_without:
        return {**record, "adaptation": "whitening", "map": adapted.state()}
    return {**record, "adaptation": "none (whitening did not help the validation people)"}


def _mapped(embeddings: np.ndarray, adapted: EmbeddingMap) -> np.ndarray:
    """``validation_embeddings(adapted, crops)`` from ``validation_embeddings(adapted.backbone,
    crops)``: the map's arithmetic on the same batches, so the same bits without the backbone."""
    with torch.inference_mode():
        return torch.cat([F.normalize((batch - adapted.mean) @ adapted.projection)
                          for batch in torch.from_numpy(embeddings).split(VALIDATION_BATCH)]).numpy()


def _summary(params: TrainParams, progress: _Progress, faces: pd.DataFrame, num_classes: int,
             steps_per_epoch: int, world_size: int) -> dict:
    summary: dict[str, Any] = {
        "backbone": params.backbone,
        "init_from": params.init_from,
        "teacher": params.teacher,
        "identities": num_classes,
        "faces": len(faces),
        "epochs": params.epochs,
        "steps": progress.step,
        "processes": world_size,
    }
    if progress.history:
        last_epoch = pd.DataFrame(progress.history[-steps_per_epoch:])
        summary["final_loss"] = round(float(last_epoch["loss"].mean()), 4)
        if params.distill.margin_weight > 0:  # closed-set accuracy needs the margin head
            summary["final_train_accuracy"] = round(float(last_epoch["train_accuracy"].mean()), 4)
    if progress.validations:
        summary.update({f"validation_{params.validation_metric}": progress.stopping.best,
                        "best_step": progress.stopping.best_step, "stopped_early": progress.stopping.should_stop})
    return summary


def _copy(state: dict) -> dict:
    return {key: value.detach().clone() for key, value in state.items()}
