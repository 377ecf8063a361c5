"""Supervised training of image classifiers on tensor-resident data.

One loop serves every study: SGD/AdamW, cosine/step schedules, an EMA of the weights
(evaluated separately), mixup, best-epoch selection on validation top-1, a per-epoch
history, an atomic checkpoint every epoch and exact resume from it.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from robustflow.data import ImageSplits
from robustflow.data.augment import (
    iterate_minibatches,
    mixup,
    normalize,
    random_crop,
    random_flip,
    to_unit_float,
)
from robustflow.io import atomic_torch_save
from robustflow.losses import build_loss
from robustflow.metrics import classification_metrics

CHECKPOINT_NAME = "last.pt"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainSettings:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 10
    step_gamma: float = 0.1
    ema_decay: float | None = None
    crop_padding: int = 0
    flip: bool = False
    mixup_alpha: float = 0.0
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    eval_batch_size: int = 512
    seed: int = 0


@dataclass
class TrainResult:
    history: pd.DataFrame
    best_epoch: int
    best_state: dict
    ema_best_epoch: int | None = None
    ema_best_state: dict | None = None


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.momentum > 0,
        )
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {settings.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int):
    """Per-step schedule so short runs still anneal smoothly."""
    total = settings.epochs * steps_per_epoch
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
    if settings.schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: settings.step_gamma ** (step // (settings.step_size * steps_per_epoch)),
        )
    if settings.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"schedule must be cosine, step or constant, got {settings.schedule!r}")


class ModelEma:
    """Exponential moving average of parameters and buffers: ema = d*ema + (1-d)*w."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                ema_value.copy_(value)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Logits for uint8 images or float images in [0, 1], computed in batches."""
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        if batch.dtype == torch.uint8:
            batch = to_unit_float(batch)
        outputs.append(model(normalize(batch, mean, std)).float().cpu())
    return torch.cat(outputs)


def _evaluate(model, images, labels, data: ImageSplits, loss_fn, settings, device) -> dict:
    logits = predict_logits(model, images, data.mean, data.std, settings.eval_batch_size, device)
    metrics = classification_metrics(logits, labels)
    metrics["loss"] = float(loss_fn(logits, labels))
    return metrics


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train_classifier(
    model: nn.Module,
    data: ImageSplits,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model`, resuming from `checkpoint_dir/last.pt` when it exists.

    The model must be freshly initialised from the run's seed; on resume its weights are
    replaced by the checkpoint's, so an interrupted run ends with exactly the history of
    an uninterrupted one (on CPU).
    """
    device = torch.device(device)
    model.to(device)
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_NAME
    loss_fn = build_loss(settings.loss, **settings.loss_params)
    steps_per_epoch = math.ceil(len(data.train_x) / settings.batch_size)
    optimizer = build_optimizer(model, settings)
    scheduler = build_scheduler(optimizer, settings, steps_per_epoch)
    ema = ModelEma(model, settings.ema_decay) if settings.ema_decay else None
    generator = torch.Generator().manual_seed(settings.seed)
    history: list[dict] = []
    best = {"epoch": 0, "top1": -1.0, "state": _state_copy(model)}
    ema_best = {"epoch": 0, "top1": -1.0, "state": _state_copy(ema.module) if ema else None}

    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False) if checkpoint_path.exists() else None
    if state is not None and state["settings"] != asdict(settings):
        # The config changed since this checkpoint: its run is not the one asked for.
        warnings.warn(f"ignoring {checkpoint_path}: written with other settings; training from scratch")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema:
            ema.module.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state["cuda_rng"] is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        history, best, ema_best = state["history"], state["best"], state["ema_best"]

    train_x = data.train_x.to(device)
    train_y = data.train_y.to(device)
    epochs = range(len(history) + 1, settings.epochs + 1)
    for epoch in tqdm(epochs, desc="epochs", disable=not progress, initial=len(history), total=settings.epochs):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for indices in iterate_minibatches(len(train_x), settings.batch_size, generator, shuffle=True):
            indices = indices.to(device)
            images = to_unit_float(train_x[indices])
            labels = train_y[indices]
            if settings.crop_padding:
                images = random_crop(images, settings.crop_padding, generator)
            if settings.flip:
                images = random_flip(images, generator)
            if settings.mixup_alpha > 0:
                images, labels_a, labels_b, lam = mixup(images, labels, settings.mixup_alpha, generator)
            logits = model(normalize(images, data.mean, data.std))
            if settings.mixup_alpha > 0:
                loss = lam * loss_fn(logits, labels_a) + (1 - lam) * loss_fn(logits, labels_b)
            else:
                loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss.item()} at epoch {epoch} (lr {scheduler.get_last_lr()[0]:.3g}); "
                    f"training stopped, last good checkpoint: {checkpoint_path}. "
                    "Lower the learning rate or the margin lambda."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update(model)
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)

        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / seen, "train_top1": correct / seen}
        val = _evaluate(model, data.val_x, data.val_y, data, loss_fn, settings, device)
        record.update({f"val_{k}": v for k, v in val.items()})
        if val["top1"] > best["top1"]:
            best = {"epoch": epoch, "top1": val["top1"], "state": _state_copy(model)}
        if ema:
            ema_val = _evaluate(ema.module, data.val_x, data.val_y, data, loss_fn, settings, device)
            record.update({f"ema_val_{k}": v for k, v in ema_val.items()})
            if ema_val["top1"] > ema_best["top1"]:
                ema_best = {"epoch": epoch, "top1": ema_val["top1"], "state": _state_copy(ema.module)}
        history.append(record)

        atomic_torch_save(
            {
                "settings": asdict(settings),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.module.state_dict() if ema else None,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),  # dropout draws from the global streams
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "history": history,
                "best": best,
                "ema_best": ema_best,
            },
            checkpoint_path,
        )
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    return TrainResult(
        history=pd.DataFrame(history),
        best_epoch=best["epoch"],
        best_state=best["state"],
        ema_best_epoch=ema_best["epoch"] if ema else None,
        ema_best_state=ema_best["state"] if ema else None,
    )
