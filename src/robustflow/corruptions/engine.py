"""``corrupt``: apply one CIFAR-10-C corruption at one severity to a batch of images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from . import blur, digital, geometric, noise, weather
from .params import CIFAR_SEVERITY_PARAMS, CORRUPTIONS, SEVERITIES

CorruptionFunction = Callable[[torch.Tensor, Any, torch.Generator], torch.Tensor]

CORRUPTION_FUNCTIONS: dict[str, CorruptionFunction] = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "elastic_transform": geometric.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
    "speckle_noise": noise.speckle_noise,
    "gaussian_blur": blur.gaussian_blur,
    "spatter": weather.spatter,
    "saturate": digital.saturate,
}


def corrupt(images: torch.Tensor, corruption: str, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Corrupt a batch of images with the CIFAR-10-C parameters of ``severity``.

    ``images``: float (N, 3, H, W) in [0, 1], on any device; the result has the same shape,
    dtype and device, clipped to [0, 1]. Severity 0 returns an unchanged copy. Random draws
    come from ``generator`` (on any device), so a fixed seed gives identical output.
    """
    if corruption not in CORRUPTION_FUNCTIONS:
        raise ValueError(f"corruption must be one of {', '.join(CORRUPTIONS)}; got {corruption!r}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 0 <= severity <= SEVERITIES[-1]:
        raise ValueError(f"severity must be an integer in 0..{SEVERITIES[-1]} (0 = clean), got {severity!r}")
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise ValueError(
            f"images must be a floating-point tensor, got {getattr(images, 'dtype', type(images))}"
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError("images must hold values in [0, 1]")
    if severity == 0 or images.shape[0] == 0:
        return images.clone()
    params = CIFAR_SEVERITY_PARAMS[corruption][severity - 1]
    return CORRUPTION_FUNCTIONS[corruption](images, params, generator).clamp(0.0, 1.0)
