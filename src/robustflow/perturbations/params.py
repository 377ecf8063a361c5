"""The CIFAR-10-P perturbations, their frame counts and per-frame parameters.

Source of every number: ``ImageNet-P/create_p/make_cifar_p.py`` in github.com/hendrycks/robustness
(Hendrycks & Dietterich, ICLR 2019), the generator of the published CIFAR-10-P files. The
per-frame expressions are written as that script writes them, so the floats are the same.
The scored set is the one ``ImageNet-P/cifar-p-eval.py`` evaluates; the other four are the
validation perturbations of the same script.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from robustflow.corruptions.params import MotionBlurParams, SnowParams, SpatterParams

SCORED_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "motion_blur",
    "zoom_blur",
    "spatter",
    "brightness",
    "translate",
    "rotate",
    "tilt",
    "scale",
)
VALIDATION_PERTURBATIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "shear", "snow")
PERTURBATIONS: tuple[str, ...] = SCORED_PERTURBATIONS + VALIDATION_PERTURBATIONS
# The flip rate of these compares every frame with frame 0 (cifar-p-eval.py: 'noise' in name).
NOISE_PERTURBATIONS: tuple[str, ...] = tuple(name for name in PERTURBATIONS if "noise" in name)
# Those drawing random numbers; every other sequence is a fixed function of the image.
STOCHASTIC_PERTURBATIONS: tuple[str, ...] = NOISE_PERTURBATIONS + ("spatter", "snow")

# Noise: frame 0 is the clean image, frames 1..30 independent draws at one level (the script's
# commented-out harder levels are 0.04 / 0.06, 400 / 200 and 0.07 / 0.10).
NOISE_FRAMES = 31
GAUSSIAN_NOISE_STD = 0.02  # additive, on [0, 1]
SHOT_NOISE_RATE = 700.0  # Poisson(700 x) / 700
SPECKLE_NOISE_STD = 0.05  # x + x N(0, 0.05^2)

MOTION_BLUR = MotionBlurParams(radius=6, sigma=1.8)
GAUSSIAN_BLUR_TRUNCATE = 7.0  # skimage.filters.gaussian(..., truncate=7.0)
# One snow layer per image, smeared by a motion blur whose angle moves with the frame. Zoom and
# threshold are applied once to the layer, before the blur (see sequences.snow).
SNOW = SnowParams(mean=0.05, std=0.3, zoom=2.0, threshold=0.5, blur_radius=10, blur_sigma=2.0, blend=0.85)
# One liquid layer per image, thresholded once; each later frame lets it flow one step down the
# rows: row r becomes 0.2 * row r + 0.8 * row r - 1 (np.convolve(..., [0.2, 0.8], 'same')).
SPATTER = SpatterParams(mean=0.6, std=0.265, sigma=1.75, threshold=0.7, intensity=0.6, mud=False)
SPATTER_FLOW = (0.2, 0.8)  # weights of the row itself and of the row above
SPATTER_FRAMES = 31

# The parameter that changes from frame to frame, frame i = 0..T-1.
FRAME_PARAMETERS: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "motion_blur": tuple(float((i - 20) * 9) for i in range(21)),  # blur angle, degrees
        "zoom_blur": tuple(1 + 0.004 * i for i in range(31)),  # zoom added to the running mean
        "snow": tuple(float(i * 4 - 150) for i in range(31)),  # blur angle of the snow layer
        "brightness": tuple((i - 15) * 1.5 / 100.0 for i in range(31)),  # added to HSV value
        "translate": tuple(float(i - 7) for i in range(16)),  # horizontal shift, pixels
        "rotate": tuple(float(i - 15) for i in range(31)),  # degrees, clockwise
        "tilt": tuple(0.75 * (i - 15) for i in range(31)),  # both tilt angles, degrees
        "scale": tuple((i * 2 + 70) / 100.0 for i in range(31)),  # zoom factor
        "gaussian_blur": tuple(0.3 + 0.015 * i for i in range(31)),  # sigma, pixels
        "shear": tuple(float(i - 15) for i in range(31)),  # shear angle, degrees
    }
)

_FRAME_COUNTS = {
    **dict.fromkeys(NOISE_PERTURBATIONS, NOISE_FRAMES),
    "spatter": SPATTER_FRAMES,
    **{name: len(values) for name, values in FRAME_PARAMETERS.items()},
}
FRAMES: Mapping[str, int] = MappingProxyType({name: _FRAME_COUNTS[name] for name in PERTURBATIONS})
