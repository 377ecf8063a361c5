"""Robustar's paired training: each image is trained together with a copy whose background is replaced.

The loss of a batch is the task loss averaged over both copies plus ``reg_coeff`` times the
distance between the two predictions. The distance is the squared L2 distance between the
softmax outputs (summed over classes, averaged over the batch): it is symmetric, bounded by 2,
and its gradient stays finite for confident predictions, where a KL term grows without bound
and a large ``reg_coeff`` would then swamp the task loss. ``reg_coeff = 0`` is standard
training on both copies (background replacement as plain augmentation).

`training.train_classifier` has no loss hook, so `train_paired` is a short loop of its own that
reuses `training.training_parts` (loss, optimizer, schedule, EMA, generator) and
`training.validate_epoch` (validation and best-epoch selection).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from robustflow.data import ImageSplits
from robustflow.data.augment import iterate_minibatches, normalize, random_crop, random_flip, to_unit_float
from robustflow.training import (
    TrainResult,
    TrainSettings,
    TrainingDivergedError,
    autocast_context,
    training_parts,
    validate_epoch,
)

PAIR_MODES = ("noise", "other_background", "constant")
CONSTANT_GRAY = 0.5


def paired_images(images: torch.Tensor, masks: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Copies of float images in [0, 1] whose background pixels (``~masks``) are replaced.

    ``noise``: uniform noise in [0, 1] per pixel and channel; ``other_background``: the pixels
    of another image of the batch (the batch rolled by a random shift of 1..N-1, so never the
    image itself when N > 1); ``constant``: gray 0.5. Foreground pixels are kept exactly.
    """
    if mode not in PAIR_MODES:
        raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {mode!r}")
    if masks.dtype != torch.bool or masks.shape != (images.shape[0], 1, *images.shape[2:]):
        raise ValueError(f"masks must be bool (N, 1, H, W) matching images {tuple(images.shape)}, "
                         f"got {masks.dtype} {tuple(masks.shape)}")
    if mode == "noise":
        replacement = torch.rand(images.shape, generator=generator, device=generator.device).to(images.device)
    elif mode == "other_background":
        n = images.shape[0]
        shift = int(torch.randint(1, max(n, 2), (1,), generator=generator, device=generator.device))
        replacement = images.roll(shift, dims=0)
    else:
        replacement = torch.full_like(images, CONSTANT_GRAY)
    return torch.where(masks, images, replacement)


def prediction_distance(logits_a: torch.Tensor, logits_b: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ||softmax(a) - softmax(b)||^2 (0 exactly when the predictions agree)."""
    return (logits_a.softmax(dim=1) - logits_b.softmax(dim=1)).pow(2).sum(dim=1).mean()


def paired_loss(
    logits: torch.Tensor,
    paired_logits: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    reg_coeff: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, task, distance): task = mean of the loss on both copies; total = task + reg_coeff * distance."""
    task = 0.5 * (loss_fn(logits, labels) + loss_fn(paired_logits, labels))
    distance = prediction_distance(logits, paired_logits)
    return task + reg_coeff * distance, task, distance


def _augment_pair(images: torch.Tensor, paired: torch.Tensor, settings: TrainSettings,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same crop and flip for an image and its pair (stacked on the channel axis)."""
    stacked = torch.cat([images, paired], dim=1)
    if settings.crop_padding:
        stacked = random_crop(stacked, settings.crop_padding, generator)
    if settings.flip:
        stacked = random_flip(stacked, generator)
    return stacked.split(images.shape[1], dim=1)


def train_paired(
    model: nn.Module,
    data: ImageSplits,
    train_masks: torch.Tensor,
    settings: TrainSettings,
    *,
    pair_mode: str = "noise",
    reg_coeff: float = 1.0,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train `model` on each training image and its background-replaced pair (see module doc).

    ``train_masks`` (bool, N,1,H,W) are the foreground masks of ``data.train_x``. Validation,
    best-epoch selection and EMA work as in `training.train_classifier`; the history adds
    ``train_task_loss`` and ``train_distance``. Runs are seconds long, so there is no resume;
    mixup and data parallelism are not supported.
    """
    if settings.mixup_alpha > 0:
        raise ValueError(f"paired training does not support mixup (mixup_alpha={settings.mixup_alpha})")
    if settings.devices != 1:
        raise ValueError(f"paired training runs in one process; devices must be 1, got {settings.devices}")
    if reg_coeff < 0:
        raise ValueError(f"reg_coeff must be >= 0, got {reg_coeff}")
    if pair_mode not in PAIR_MODES:
        raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {pair_mode!r}")
    if train_masks is None or train_masks.shape != (len(data.train_x), 1, *data.train_x.shape[2:]):
        raise ValueError("train_masks must hold one bool (1, H, W) mask per training image; paired training "
                         "needs foreground masks of the training set")
    device = torch.device(device)
    model.to(device)
    loss_fn, optimizer, scheduler, ema, generator = training_parts(model, settings, len(data.train_x))
    train_x, train_y, masks = data.train_x.to(device), data.train_y.to(device), train_masks.to(device)
    history: list[dict] = []
    best = {"epoch": 0, "top1": -1.0, "loss": math.inf, "state": None}
    ema_best = {"epoch": 0, "top1": -1.0, "loss": math.inf, "state": None}
    for epoch in range(1, settings.epochs + 1):
        model.train()
        sums = {"loss": 0.0, "task": 0.0, "distance": 0.0, "correct": 0, "seen": 0}
        for indices in iterate_minibatches(len(train_x), settings.batch_size, generator, shuffle=True):
            indices = indices.to(device)
            images = to_unit_float(train_x[indices])
            paired = paired_images(images, masks[indices], pair_mode, generator)
            images, paired = _augment_pair(images, paired, settings, generator)
            labels = train_y[indices]
            with autocast_context(device, settings.amp):
                logits, paired_logits = model(normalize(torch.cat([images, paired]), data.mean, data.std)).chunk(2)
                loss, task, distance = paired_loss(logits.float(), paired_logits.float(), labels, loss_fn, reg_coeff)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"paired loss became {loss.item()} at epoch {epoch}; lower the "
                                            f"learning rate (lr {scheduler.get_last_lr()[0]:.3g}) or reg_coeff")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update(model)
            n = len(labels)
            sums["loss"] += loss.item() * n
            sums["task"] += task.item() * n
            sums["distance"] += distance.item() * n
            sums["correct"] += int((logits.argmax(1) == labels).sum())
            sums["seen"] += n
        seen = sums["seen"]
        record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": sums["loss"] / seen,
                  "train_task_loss": sums["task"] / seen, "train_distance": sums["distance"] / seen,
                  "train_top1": sums["correct"] / seen}
        best = validate_epoch(model, data, loss_fn, settings, device, epoch, best, record, "val")
        if ema:
            ema_best = validate_epoch(ema.module, data, loss_fn, settings, device, epoch, ema_best, record, "ema_val")
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    return TrainResult(history=pd.DataFrame(history), best_epoch=best["epoch"], best_state=best["state"],
                       ema_best_epoch=ema_best["epoch"] if ema else None,
                       ema_best_state=ema_best["state"] if ema else None)
