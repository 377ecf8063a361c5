"""``perturbation_sequence``: the frames of one CIFAR-10-P perturbation for a batch of images."""

from __future__ import annotations

import torch

from .params import FRAMES, PERTURBATIONS, STOCHASTIC_PERTURBATIONS
from .sequences import SEQUENCE_FUNCTIONS


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        raise ValueError(f"images must be a uint8 tensor, got {getattr(images, 'dtype', type(images))}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")


def perturbation_sequence(
    images: torch.Tensor,
    name: str,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """The T frames of perturbation ``name`` for every image: uint8 (N, T, C, H, W).

    ``images``: uint8 (N, 3, H, W), e.g. the CIFAR-10 test set in order. Frames, their number
    (``FRAMES``) and parameters are those of ``make_cifar_p.py`` (hendrycks/robustness, the
    generator of the published CIFAR-10-P); see ``robustflow.perturbations.params``. The whole
    batch is processed at once on ``device`` (default: the images' device), where the result
    stays.

    ``generator``: required for the perturbations that draw random numbers
    (``STOCHASTIC_PERTURBATIONS``), ignored by the others. The reference sets no seed, so its
    files cannot be regenerated draw for draw; here the same generator state gives the same
    frames. Draws are made on the generator's device, so a CPU generator gives the same draws
    for images on any device.
    """
    if name not in SEQUENCE_FUNCTIONS:
        raise ValueError(f"perturbation must be one of {', '.join(PERTURBATIONS)}; got {name!r}")
    _check_images(images)
    if name in STOCHASTIC_PERTURBATIONS and not isinstance(generator, torch.Generator):
        raise ValueError(
            f"{name} draws random numbers: pass a torch.Generator (make_cifar_p.py sets no seed, so "
            f"only a seeded generator makes the frames reproducible), got {type(generator).__name__}"
        )
    images = images.to(device if device is not None else images.device)
    n, c, h, w = images.shape
    if n == 0:
        return torch.empty(0, FRAMES[name], c, h, w, dtype=torch.uint8, device=images.device)
    return SEQUENCE_FUNCTIONS[name](images, generator).contiguous()
