"""The CIFAR-10-C severity parameter table (Hendrycks & Dietterich, 2019).

The CIFAR-sized set uses milder parameters than ImageNet-C; the values below are those of the
CIFAR-10-C generation code. Each entry holds the parameters of severities 1..5 in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple, Union

from robustflow.corruption_names import BENCHMARK_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, SEVERITIES  # noqa: F401


class GlassBlurParams(NamedTuple):
    sigma: float
    max_delta: int
    iterations: int


class DefocusBlurParams(NamedTuple):
    radius: float
    alias_blur: float


class MotionBlurParams(NamedTuple):
    radius: int
    sigma: float


class FogParams(NamedTuple):
    strength: float
    wibble_decay: float


class FrostParams(NamedTuple):
    image_weight: float
    frost_weight: float


class SnowParams(NamedTuple):
    mean: float
    std: float
    zoom: float
    threshold: float
    blur_radius: int
    blur_sigma: float
    blend: float


class SpatterParams(NamedTuple):
    mean: float
    std: float
    sigma: float
    threshold: float
    intensity: float
    mud: bool  # False: water drops, True: mud splashes


class SaturateParams(NamedTuple):
    scale: float
    offset: float


class ElasticParams(NamedTuple):
    """All three are fractions of the image size (the CIFAR code multiplies them by 32)."""

    alpha: float
    sigma: float
    affine_jitter: float


SeverityParam = Union[
    float,
    GlassBlurParams,
    DefocusBlurParams,
    MotionBlurParams,
    FogParams,
    FrostParams,
    SnowParams,
    SpatterParams,
    SaturateParams,
    ElasticParams,
]

_G, _D, _M, _F = GlassBlurParams, DefocusBlurParams, MotionBlurParams, FogParams
_FR, _SN, _SP, _SA, _E = FrostParams, SnowParams, SpatterParams, SaturateParams, ElasticParams

CIFAR_SEVERITY_PARAMS: Mapping[str, tuple[SeverityParam, ...]] = MappingProxyType(
    {
        # additive std on [0, 1]
        "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
        # Poisson rate: photons per unit intensity
        "shot_noise": (500.0, 250.0, 100.0, 75.0, 50.0),
        # salt-and-pepper: fraction of pixel values replaced
        "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
        "defocus_blur": (_D(0.3, 0.4), _D(0.4, 0.5), _D(0.5, 0.6), _D(1.0, 0.2), _D(1.5, 0.1)),
        "glass_blur": (
            _G(0.05, 1, 1),
            _G(0.25, 1, 1),
            _G(0.4, 1, 1),
            _G(0.25, 1, 2),
            _G(0.4, 1, 2),
        ),
        "motion_blur": (_M(6, 1.0), _M(6, 1.5), _M(6, 2.0), _M(8, 2.0), _M(9, 2.5)),
        # largest zoom factor; factors run from 1 in steps of 0.01
        "zoom_blur": (1.05, 1.10, 1.15, 1.20, 1.25),
        "snow": (
            _SN(0.1, 0.2, 1.0, 0.6, 8, 3.0, 0.95),
            _SN(0.1, 0.2, 1.0, 0.5, 10, 4.0, 0.9),
            _SN(0.15, 0.3, 1.75, 0.55, 10, 4.0, 0.9),
            _SN(0.25, 0.3, 2.25, 0.6, 12, 6.0, 0.85),
            _SN(0.3, 0.3, 1.25, 0.65, 14, 12.0, 0.8),
        ),
        "frost": (_FR(1.0, 0.2), _FR(1.0, 0.3), _FR(0.9, 0.4), _FR(0.85, 0.4), _FR(0.75, 0.45)),
        "fog": (_F(0.2, 3.0), _F(0.5, 3.0), _F(0.75, 2.5), _F(1.0, 2.0), _F(1.5, 1.75)),
        # added to the HSV value channel
        "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
        # factor applied to the deviation from the per-channel image mean
        "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
        "elastic_transform": (
            _E(0.0, 0.0, 0.08),
            _E(0.05, 0.2, 0.07),
            _E(0.08, 0.06, 0.06),
            _E(0.1, 0.04, 0.05),
            _E(0.1, 0.03, 0.03),
        ),
        # downscale factor (box filter down, box filter back up)
        "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
        # JPEG quality
        "jpeg_compression": (80.0, 65.0, 58.0, 50.0, 40.0),
        # multiplicative std
        "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),
        # sigma in pixels
        "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
        "spatter": (
            _SP(0.62, 0.1, 0.7, 0.7, 0.5, False),
            _SP(0.65, 0.1, 0.8, 0.7, 0.5, False),
            _SP(0.65, 0.3, 1.0, 0.69, 0.5, False),
            _SP(0.65, 0.1, 0.7, 0.69, 0.6, True),
            _SP(0.65, 0.1, 0.5, 0.68, 0.6, True),
        ),
        # HSV saturation * scale + offset
        "saturate": (_SA(0.3, 0.0), _SA(0.1, 0.0), _SA(1.5, 0.0), _SA(2.0, 0.1), _SA(2.5, 0.2)),
    }
)
