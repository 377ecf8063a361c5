"""Batched CIFAR-10-C corruptions (Hendrycks & Dietterich, 2019) on float NCHW tensors.

``corrupt(images, corruption, severity, generator)`` applies one of the 19 corruptions at the
CIFAR-10-C parameters (``CIFAR_SEVERITY_PARAMS``) to a whole batch on the images' device.
The algorithms follow the per-image NumPy reference (``imagecorruptions``); see the modules
for where and why the batched version departs from it.
"""

from .engine import CORRUPTION_FUNCTIONS, corrupt
from .params import (
    BENCHMARK_CORRUPTIONS,
    CIFAR_SEVERITY_PARAMS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    SEVERITIES,
    DefocusBlurParams,
    ElasticParams,
    FogParams,
    FrostParams,
    GlassBlurParams,
    MotionBlurParams,
    SaturateParams,
    SeverityParam,
    SnowParams,
    SpatterParams,
)

__all__ = [
    "BENCHMARK_CORRUPTIONS",
    "CIFAR_SEVERITY_PARAMS",
    "CORRUPTIONS",
    "CORRUPTION_FUNCTIONS",
    "EXTRA_CORRUPTIONS",
    "SEVERITIES",
    "DefocusBlurParams",
    "ElasticParams",
    "FogParams",
    "FrostParams",
    "GlassBlurParams",
    "MotionBlurParams",
    "SaturateParams",
    "SeverityParam",
    "SnowParams",
    "SpatterParams",
    "corrupt",
]
