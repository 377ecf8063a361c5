"""Robustar's paired training: each image is trained together with a copy whose background is replaced.

The loss of a batch is the task loss averaged over both copies plus ``reg_coeff`` times the
distance between the two predictions. The distance is the squared L2 distance between the
softmax outputs (summed over classes, averaged over the batch): it is symmetric, bounded by 2,
and its gradient stays finite for confident predictions, where a KL term grows without bound
and a large ``reg_coeff`` would then swamp the task loss. ``reg_coeff = 0`` is standard
training on both copies (background replacement as plain augmentation).

Paired training is a `PairedObjective` on the one training loop (`training.train_with_objective`),
so it resumes from its checkpoint, stops on SIGTERM and runs with EMA, AMP and data parallelism
as classifier training does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustflow.data import ImageSplits
from robustflow.data.augment import to_unit_float
from robustflow.training import (
    BatchLoss,
    BatchObjective,
    BatchViews,
    Forward,
    LossFn,
    TrainBatch,
    TrainResult,
    TrainSettings,
    crop_and_flip,
    train_with_objective,
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


@dataclass(eq=False)  # masks are a tensor: compare objectives by identity()
class PairedObjective(BatchObjective):
    """Each image with its background-replaced pair: the loss of `paired_loss` (see the module doc).

    ``masks`` (bool, N,1,H,W) are the foreground masks of the training images, row for row.
    """

    masks: torch.Tensor
    pair_mode: str = "noise"
    reg_coeff: float = 1.0

    def __post_init__(self):
        if self.pair_mode not in PAIR_MODES:
            raise ValueError(f"pair_mode must be one of {PAIR_MODES}, got {self.pair_mode!r}")
        if self.reg_coeff < 0:
            raise ValueError(f"reg_coeff must be >= 0, got {self.reg_coeff}")

    def identity(self) -> dict:
        return {"name": "paired", "pair_mode": self.pair_mode, "reg_coeff": float(self.reg_coeff)}

    def per_sample_data(self) -> dict[str, torch.Tensor]:
        return {"masks": self.masks}

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        # The pair is drawn from the whole global batch (other_background borrows another image's
        # pixels), then both copies get one crop and flip: stacked on the channel axis.
        images = to_unit_float(batch.images)
        paired = paired_images(images, batch.per_sample["masks"], self.pair_mode, generator)
        stacked = crop_and_flip(torch.cat([images, paired], dim=1), settings, generator)
        images, paired = stacked.split(images.shape[1], dim=1)
        return BatchViews(batch.labels, {"images": images, "paired": paired})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        both = torch.cat([views.per_sample["images"], views.per_sample["paired"]])
        logits, paired_logits = forward(both).chunk(2)
        loss, task, distance = paired_loss(logits.float(), paired_logits.float(), views.labels, loss_fn,
                                           self.reg_coeff)
        return BatchLoss(loss, logits, {"task_loss": task, "distance": distance})


def train_paired(
    model: nn.Module,
    data: ImageSplits,
    train_masks: torch.Tensor,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    pair_mode: str = "noise",
    reg_coeff: float = 1.0,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on each training image and its background-replaced pair (see module doc).

    ``train_masks`` (bool, N,1,H,W) are the foreground masks of ``data.train_x``. Everything else
    is `training.train_with_objective`: resume from ``checkpoint_dir/last.pt`` (a checkpoint of
    another pair_mode or reg_coeff is another run), SIGTERM, EMA, AMP, data parallelism (each mask
    travels with its image), validation and best-epoch selection. The history adds
    ``train_task_loss`` and ``train_distance``. Mixup is not supported.
    """
    if settings.mixup_alpha > 0:
        raise ValueError(f"paired training does not support mixup (mixup_alpha={settings.mixup_alpha})")
    if train_masks is None or train_masks.shape != (len(data.train_x), 1, *data.train_x.shape[2:]):
        raise ValueError("train_masks must hold one bool (1, H, W) mask per training image; paired training "
                         "needs foreground masks of the training set")
    objective = PairedObjective(train_masks, pair_mode, reg_coeff)
    return train_with_objective(model, data, settings, checkpoint_dir, objective, device=device,
                                on_epoch_end=on_epoch_end, progress=progress)
