"""Source 000's noise suite: four corruptions of float NCHW images in [0, 1], each at a level in [0, 1].

- ``gaussian``: x + level * e, e ~ N(0, 1) independently per pixel and channel (level is the
  noise std on the [0, 1] scale), then clipped to [0, 1].
- ``salt_pepper``: exactly round(level * H * W) pixel locations per image, chosen uniformly
  without replacement, are set to 0 or 1 with equal probability (the same value in every channel).
- ``fog``: (1 - level) * x + level * F, where F is a smooth grayscale fog field per image with
  values in [0.5, 1]: a 4x4 grid of uniform [0.5, 1] values, bilinearly upsampled to H x W.
- ``occlusion``: one black (0) square per image with side round(sqrt(level) * min(H, W)), so it
  covers a fraction ``level`` of a square image, at a uniformly random position inside the image.

Level 0 returns the images unchanged for every type. ``noise_generator`` derives the random
stream from (seed, noise, level) alone, so every model sees the same noisy images.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor

NOISE_TYPES = ("gaussian", "salt_pepper", "fog", "occlusion")

FOG_GRID = 4
FOG_RANGE = (0.5, 1.0)


def _check_noise(noise: str, level: float) -> None:
    if noise not in NOISE_TYPES:
        raise ValueError(f"unknown noise {noise!r}; valid types: {', '.join(NOISE_TYPES)}")
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"noise level must be in [0, 1], got {level}")


def noise_generator(seed: int, noise: str, level: float) -> torch.Generator:
    """A CPU generator seeded from a stable hash of (seed, noise, level)."""
    _check_noise(noise, level)
    # hashlib, not hash(): Python salts str hashes per process.
    key = f"{int(seed)}|{noise}|{float(level)!r}".encode()
    generator = torch.Generator()
    generator.manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
    return generator


def _uniform(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    # Drawn on the generator's device, so the same seed gives the same noise on CPU and GPU.
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device, like.dtype)


def _gaussian(images: Tensor, level: float, generator: torch.Generator) -> Tensor:
    noise = torch.randn(images.shape, generator=generator, device=generator.device)
    return images + level * noise.to(images.device, images.dtype)


def _salt_pepper(images: Tensor, level: float, generator: torch.Generator) -> Tensor:
    n, _, h, w = images.shape
    n_flipped = round(level * h * w)
    # The n_flipped smallest of H*W uniform keys form a uniform random subset of that size.
    chosen = _uniform((n, h * w), generator, images).argsort(dim=1)[:, :n_flipped]
    flipped = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
    flipped = flipped.scatter_(1, chosen, True).view(n, 1, h, w)
    salt = (_uniform((n, 1, h, w), generator, images) < 0.5).to(images.dtype)
    return torch.where(flipped, salt, images)


def _fog(images: Tensor, level: float, generator: torch.Generator) -> Tensor:
    n, _, h, w = images.shape
    low, high = FOG_RANGE
    coarse = low + (high - low) * _uniform((n, 1, FOG_GRID, FOG_GRID), generator, images)
    # Bilinear weights are convex, so the field stays within FOG_RANGE.
    field = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=True)
    return (1.0 - level) * images + level * field


def _occlusion(images: Tensor, level: float, generator: torch.Generator) -> Tensor:
    n, _, h, w = images.shape
    side = round(math.sqrt(level) * min(h, w))
    corner = _uniform((n, 2), generator, images)
    top = (corner[:, 0] * (h - side + 1)).floor().clamp_max(h - side)
    left = (corner[:, 1] * (w - side + 1)).floor().clamp_max(w - side)
    rows = torch.arange(h, device=images.device, dtype=images.dtype)
    cols = torch.arange(w, device=images.device, dtype=images.dtype)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    patch = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
    return images.masked_fill(patch, 0.0)


_APPLY = {"gaussian": _gaussian, "salt_pepper": _salt_pepper, "fog": _fog, "occlusion": _occlusion}


def apply_noise(images: Tensor, noise: str, level: float, generator: torch.Generator) -> Tensor:
    """``images`` (float NCHW in [0, 1]) corrupted by ``noise`` at ``level``, clipped to [0, 1]."""
    _check_noise(noise, level)
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor of shape (N, C, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0, 1], got [{float(images.min())}, {float(images.max())}]")
    if level == 0:
        return images.clone()
    return _APPLY[noise](images, float(level), generator).clamp(0.0, 1.0)
