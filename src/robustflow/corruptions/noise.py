"""Noise corruptions: additive Gaussian, Poisson (shot), salt-and-pepper, multiplicative."""

from __future__ import annotations

import torch

from ._ops import normal, uniform


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Add N(0, std^2) independently to every pixel value."""
    return x + normal(tuple(x.shape), 0.0, std, generator, x)


def shot_noise(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Poisson photon noise: ``Poisson(x * rate) / rate``."""
    counts = torch.poisson((x * rate).to(generator.device), generator=generator)
    return counts.to(x.device) / rate


def impulse_noise(x: torch.Tensor, amount: float, generator: torch.Generator) -> torch.Tensor:
    """Salt-and-pepper (scikit-image ``s&p``): each value becomes 0 or 1 (equally likely)
    with probability ``amount``."""
    flipped = uniform(tuple(x.shape), 0.0, 1.0, generator, x) < amount
    salt = uniform(tuple(x.shape), 0.0, 1.0, generator, x) < 0.5
    return torch.where(flipped, salt.to(x.dtype), x)


def speckle_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Multiplicative noise: ``x + x * N(0, std^2)``."""
    return x + x * normal(tuple(x.shape), 0.0, std, generator, x)
