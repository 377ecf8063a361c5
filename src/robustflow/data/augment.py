"""Batched data augmentation on device-resident tensors (no per-image Python).

Every random function takes a `torch.Generator`. Random numbers are drawn on the
generator's device and then moved to the data's device, so a CPU generator can drive
augmentation of GPU data, and the same seed gives the same augmentation on any device.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

PadMode = Literal["reflect", "zeros"]


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) as float32 in [0, 1]."""
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    return images.float().div_(255)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(images - mean) / std per channel, for float NCHW images."""
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}"
        )
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def random_crop(
    images: torch.Tensor, padding: int, generator: torch.Generator, pad_mode: PadMode = "reflect"
) -> torch.Tensor:
    """Pad by ``padding`` on every side, then crop back to H x W at a random offset per image.

    ``pad_mode="reflect"`` (default, as airbench) mirrors the border so no black frame
    betrays the shift; ``"zeros"`` pads with 0 like torchvision's ``RandomCrop(padding=p)``.
    Reflect padding needs ``padding < min(H, W)``. Works for any dtype.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if pad_mode not in ("reflect", "zeros"):
        raise ValueError(f"pad_mode must be 'reflect' or 'zeros', got {pad_mode!r}")
    if padding == 0:
        return images
    n, c, h, w = images.shape
    if pad_mode == "reflect" and padding >= min(h, w):
        raise ValueError(f"reflect padding must be smaller than the image side {min(h, w)}, got {padding}")
    if pad_mode == "reflect":
        # F.pad's reflect mode is not implemented for integer tensors; floats hold 0..255 exactly.
        source = images if images.is_floating_point() else images.float()
        padded = F.pad(source, (padding,) * 4, mode="reflect").to(images.dtype)
    else:
        padded = F.pad(images, (padding,) * 4, mode="constant", value=0)
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=generator.device)
    offsets = offsets.to(images.device)
    rows = offsets[0].view(n, 1, 1, 1) + torch.arange(h, device=images.device).view(1, 1, h, 1)
    cols = offsets[1].view(n, 1, 1, 1) + torch.arange(w, device=images.device).view(1, 1, 1, w)
    batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channel = torch.arange(c, device=images.device).view(1, c, 1, 1)
    return padded[batch, channel, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must lie in [0, 1], got {p}")
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < p
    flip = flip.to(images.device).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(flip, images.flip(-1), images)


def mixup(
    images: torch.Tensor, labels: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Mix each image with a partner from a random permutation of the batch.

    Returns ``(lam * x + (1 - lam) * x[perm], labels, labels[perm], lam)`` with one
    ``lam ~ Beta(alpha, alpha)`` per batch; the loss is then
    ``lam * loss(labels) + (1 - lam) * loss(labels[perm])``. ``alpha = 0`` returns the
    batch unchanged with ``lam = 1``.

    Torch's Beta/Gamma samplers take no generator, so ``lam`` comes from a NumPy
    generator seeded by a draw from ``generator``: reproducible, and it advances ``generator``.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return images, labels, labels, 1.0
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(images.shape[0], generator=generator, device=generator.device)
    perm = perm.to(images.device)
    mixed = lam * images + (1 - lam) * images[perm]
    return mixed, labels, labels[perm], lam


def iterate_minibatches(
    n: int,
    batch_size: int,
    generator: torch.Generator | None,
    shuffle: bool = True,
    drop_last: bool = False,
) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` once, in batches of ``batch_size``.

    Indices live on the generator's device (CPU without a generator). With ``drop_last``
    the final short batch is skipped.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs a generator")
        order = torch.randperm(n, generator=generator, device=generator.device)
    else:
        order = torch.arange(n, device=generator.device if generator is not None else "cpu")
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
