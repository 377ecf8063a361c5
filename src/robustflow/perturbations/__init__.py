"""Batched CIFAR-10-P perturbation sequences and two-view shift protocols on uint8 tensors.

- ``perturbation_sequence(images, name, generator, device)``: the frames of one of the 14
  CIFAR-10-P perturbations (Hendrycks & Dietterich, ICLR 2019; generator ``make_cifar_p.py`` in
  hendrycks/robustness) for a whole batch, on the images' device; parameters in ``params``.
- ``crop_shift_pair``, ``embed_translate_pair``, ``embed_scale_pair``: Azulay & Weiss (JMLR
  2019) views 1 pixel apart; ``random_shift_pair``: Zhang's (ICML 2019) consistency views.

The metrics that read these (flip probability, top-5 distance, consistency) are in
``robustflow.repeatability_metrics``.
"""

from .engine import perturbation_sequence
from .pairs import ShiftPair, crop_shift_pair, embed_scale_pair, embed_translate_pair, random_shift_pair
from .params import (
    FRAME_PARAMETERS,
    FRAMES,
    NOISE_PERTURBATIONS,
    PERTURBATIONS,
    SCORED_PERTURBATIONS,
    STOCHASTIC_PERTURBATIONS,
    VALIDATION_PERTURBATIONS,
)

__all__ = [
    "FRAMES",
    "FRAME_PARAMETERS",
    "NOISE_PERTURBATIONS",
    "PERTURBATIONS",
    "SCORED_PERTURBATIONS",
    "STOCHASTIC_PERTURBATIONS",
    "VALIDATION_PERTURBATIONS",
    "ShiftPair",
    "crop_shift_pair",
    "embed_scale_pair",
    "embed_translate_pair",
    "perturbation_sequence",
    "random_shift_pair",
]
