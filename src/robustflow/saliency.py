"""Gradient saliency: how strongly each input pixel moves the logit of a class.

The saliency of image x for class y is |d logit_y / d x| with x on the [0, 1] pixel scale
(normalisation happens inside, as in training). `saliency_map` reduces the channels by their
maximum (Simonyan et al. 2014); `foreground_share` is the fraction of saliency mass that falls
inside a foreground mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from robustflow.data.augment import normalize, to_unit_float


def gradient_saliency(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """|d logit_label / d image| per pixel and channel, float32 (N, C, H, W) on the CPU.

    ``images`` are uint8 or float in [0, 1]; the model runs in eval mode.
    """
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {tuple(labels.shape)}")
    device = torch.device(device)
    model.eval()
    parts = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        batch = to_unit_float(batch) if batch.dtype == torch.uint8 else batch.float()
        batch = batch.clone().requires_grad_(True)
        logits = model(normalize(batch, mean, std))
        chosen = logits.gather(1, labels[start : start + batch_size].to(device)[:, None]).sum()
        (grad,) = torch.autograd.grad(chosen, batch)
        parts.append(grad.abs().cpu())
    return torch.cat(parts)


def saliency_map(saliency: torch.Tensor) -> torch.Tensor:
    """(N, H, W) maximum over channels of (N, C, H, W) saliency."""
    if saliency.ndim != 4:
        raise ValueError(f"saliency must be (N, C, H, W), got shape {tuple(saliency.shape)}")
    return saliency.amax(dim=1)


def foreground_share(saliency: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Per image, the saliency mass inside the foreground mask over the total mass (N,).

    ``saliency`` is (N, H, W) or (N, C, H, W) (channels summed); ``masks`` bool (N, 1, H, W).
    An image whose saliency is all zero gets NaN.
    """
    if saliency.ndim == 4:
        saliency = saliency.sum(dim=1)
    if masks.dtype != torch.bool or masks.shape != (saliency.shape[0], 1, *saliency.shape[1:]):
        raise ValueError(f"masks must be bool (N, 1, H, W) matching saliency {tuple(saliency.shape)}, "
                         f"got {masks.dtype} {tuple(masks.shape)}")
    mass = saliency.double().flatten(1)
    total = mass.sum(dim=1)
    inside = (mass * masks[:, 0].flatten(1)).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300), torch.full_like(total, float("nan"))).float()
