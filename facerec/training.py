"""The training loop: a backbone plus a margin head over aligned identity folders.

SGD with linear warm-up then polynomial decay stepped per iteration (insightface's
schedule), bf16 autocast on CPU, one log row per step for ``dvc plots``.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facerec.backbones import build_backbone
from facerec.config import TrainParams
from facerec.data.aligned import load_crops, normalise
from facerec.hardware import use_bf16
from facerec.heads import build_head
from facerec.zoo import save_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    history: pd.DataFrame
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


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def warmup_poly_schedule(total_steps: int, warmup_steps: int, power: float = 2.0):
    """LR multiplier per step: linear warm-up to 1, then (1 − progress)^power down to 0."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return max(0.0, 1.0 - progress) ** power

    return multiplier


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip of uint8 crops (a face mirrored is the same person)."""
    flip = torch.rand(batch.shape[0], generator=generator) < 0.5
    batch = batch.clone()
    batch[flip] = batch[flip].flip(-1)
    return batch


def train_model(aligned_dir: str | Path, aligned: pd.DataFrame, params: TrainParams,
                checkpoint_path: str | Path) -> TrainResult:
    """Train ``params.backbone`` with the margin head of ``params.head``; save the checkpoint; return the history."""
    torch.set_num_threads(params.num_threads)
    generator = seed_everything(params.seed)
    faces = select_training_faces(aligned, params.min_images_per_identity)
    num_classes = int(faces["label"].max()) + 1
    log.info("training %s on %d faces of %d identities", params.backbone, len(faces), num_classes)
    crops = load_crops(aligned_dir, faces["path"].tolist())
    labels = torch.tensor(faces["label"].to_numpy(), dtype=torch.long)

    model = build_backbone(params.backbone, embedding_size=params.embedding_size)
    model = model.to(memory_format=torch.channels_last)
    head = build_head(params.head.type, params.embedding_size, num_classes,
                      **params.head.model_dump(exclude={"type"}))
    optimizer = torch.optim.SGD([*model.parameters(), *head.parameters()], lr=params.lr,
                                momentum=params.momentum, weight_decay=params.weight_decay)
    steps_per_epoch = len(faces) // params.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(faces)} faces are fewer than one batch of {params.batch_size}")
    total_steps = steps_per_epoch * params.epochs
    warmup_steps = int(params.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_poly_schedule(total_steps, warmup_steps))

    bf16 = use_bf16(params.precision)
    history, started, step = [], time.perf_counter(), 0
    model.train()
    head.train()
    progress = tqdm(total=total_steps, desc=f"train {params.backbone}", unit="step", mininterval=10)
    for epoch in range(params.epochs):
        order = torch.randperm(len(faces), generator=generator)
        for batch_index in range(steps_per_epoch):
            index = order[batch_index * params.batch_size:(batch_index + 1) * params.batch_size]
            images = normalise(augment(crops[index], generator)).contiguous(
                memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                embeddings = model(images)
            logits = head(embeddings.float(), labels[index])
            loss = F.cross_entropy(logits, labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            accuracy = (logits.argmax(1) == labels[index]).float().mean().item()
            history.append({"step": step, "epoch": epoch + (batch_index + 1) / steps_per_epoch,
                            "loss": loss.item(), "train_accuracy": accuracy,
                            "lr": optimizer.param_groups[0]["lr"]})
            progress.update()
            progress.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch + 1)
    progress.close()
    seconds = time.perf_counter() - started
    save_checkpoint(checkpoint_path, model, params.backbone, params.embedding_size,
                    identities=sorted(faces["identity"].unique()), head=head)
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
    log.info("trained in %.0f s: %s", seconds, summary)
    return TrainResult(history=pd.DataFrame(history), summary=summary)
