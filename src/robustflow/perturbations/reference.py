"""The per-image reference path: ``make_cifar_p.py`` (hendrycks/robustness) one image at a time,
with the libraries it calls, for fidelity tests and speed comparisons.

Each function takes one uint8 (H, W, 3) image and returns its uint8 (T, H, W, 3) frames.
Departures, all forced by what can be installed today:

- motion blur: the reference calls ImageMagick through Wand; here the NumPy port of
  ImageMagick's motion blur in ``imagecorruptions`` (``_motion_blur``) stands in, with
  ImageMagick's rounding to 8 bits;
- torchvision's ``affine`` of 2018-19 (centre (w/2 + 0.5, h/2 + 0.5), one shear angle) is no
  longer installable with current torch; its inverse matrix is written out here from that
  version's formula and handed to Pillow's ``Image.transform`` as it did;
- tilt: OpenCV's warps are now computed in floating point; the fixed-point path of the
  OpenCV the reference ran is rebuilt from ``cv2.remap`` (``legacy_warp_perspective``);
- gaussian noise draws with NumPy instead of ``torch.randn_like`` (same distribution, one call
  per frame as in the reference);
- spatter: where no liquid passes the threshold the reference divides by zero (NaN frames);
  here those frames are left clean, as the batched engine does.

Stochastic perturbations take a ``numpy.random.Generator``; ``spatter_from_liquid`` and
``snow_from_layer`` take the draw itself, so tests can replay the engine's draws.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

try:
    import cv2
    import skimage.color
    from imagecorruptions.corruptions import _motion_blur, clipped_zoom
    from skimage.filters import gaussian
except ModuleNotFoundError as error:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "robustflow.perturbations.reference needs imagecorruptions-imaug (with OpenCV and "
        "scikit-image): pip install imagecorruptions-imaug (a robustflow dependency)"
    ) from error

from .params import (
    FRAME_PARAMETERS,
    GAUSSIAN_BLUR_TRUNCATE,
    GAUSSIAN_NOISE_STD,
    MOTION_BLUR,
    NOISE_FRAMES,
    SHOT_NOISE_RATE,
    SNOW,
    SPATTER,
    SPATTER_FLOW,
    SPATTER_FRAMES,
    SPECKLE_NOISE_STD,
)

ReferenceFunction = Callable[[np.ndarray, np.random.Generator], np.ndarray]
EMBOSS = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
WATER_RGB = (175, 238, 238)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """``np.uint8(values)``: truncation, as the reference writes it."""
    return values.astype(np.uint8)


def _imagemagick_uint8(values: np.ndarray) -> np.ndarray:
    """ImageMagick's 8-bit PNG output of a 0..255 result: clipped and rounded."""
    return np.round(np.clip(values, 0, 255)).astype(np.uint8)


# --------------------------------------------------------------------------- noise


def _noise_frames(image: np.ndarray, noisy: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    x = image / 255.0
    frames = [image] + [_to_uint8(255 * np.clip(noisy(x), 0, 1)) for _ in range(NOISE_FRAMES - 1)]
    return np.stack(frames)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _noise_frames(image, lambda x: x + GAUSSIAN_NOISE_STD * rng.standard_normal(x.shape))


def shot_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _noise_frames(image, lambda x: rng.poisson(x * SHOT_NOISE_RATE) / SHOT_NOISE_RATE)


def speckle_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return _noise_frames(image, lambda x: x + x * rng.normal(size=x.shape, scale=SPECKLE_NOISE_STD))


# --------------------------------------------------------------------------- geometric


def torchvision_02_inverse_affine(
    size: tuple[int, int], angle: float, translate: tuple[float, float], scale: float, shear: float
) -> tuple[float, ...]:
    """torchvision 0.2's ``_get_inverse_affine_matrix`` for a PIL image of ``size`` (w, h):
    the inverse of T C RSS C^-1 about C = (w/2 + 0.5, h/2 + 0.5), with
    RSS = [[cos a, -sin(a + s)], [sin a, cos(a + s)]] * scale."""
    cx, cy = size[0] * 0.5 + 0.5, size[1] * 0.5 + 0.5
    a, s = math.radians(angle), math.radians(shear)
    d = math.cos(a + s) * math.cos(a) + math.sin(a + s) * math.sin(a)
    m = [math.cos(a + s), math.sin(a + s), 0.0, -math.sin(a), math.cos(a), 0.0]
    m = [entry / (scale * d) for entry in m]
    m[2] += m[0] * (-cx - translate[0]) + m[1] * (-cy - translate[1]) + cx
    m[5] += m[3] * (-cx - translate[0]) + m[4] * (-cy - translate[1]) + cy
    return tuple(m)


def _affine(
    image: np.ndarray, resample: int, angle=0.0, translate=(0.0, 0.0), scale=1.0, shear=0.0
) -> np.ndarray:
    pil = Image.fromarray(image)
    matrix = torchvision_02_inverse_affine(pil.size, angle, translate, scale, shear)
    return np.array(pil.transform(pil.size, Image.AFFINE, matrix, resample))


def translate(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    shifts = FRAME_PARAMETERS["translate"]
    return np.stack([_affine(image, Image.NEAREST, translate=(shift, 0.0)) for shift in shifts])


def rotate(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return np.stack([_affine(image, Image.BILINEAR, angle=a) for a in FRAME_PARAMETERS["rotate"]])


def shear(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return np.stack([_affine(image, Image.BILINEAR, shear=a) for a in FRAME_PARAMETERS["shear"]])


def scale(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    return np.stack([_affine(image, Image.BILINEAR, scale=z) for z in FRAME_PARAMETERS["scale"]])


def _tilt_homography(h: int, w: int, angle: float) -> np.ndarray:
    phi = theta = np.deg2rad(angle)
    f = np.sqrt(w**2 + h**2)
    p1 = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rx = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(theta), -np.sin(theta), 0],
            [0, np.sin(theta), np.cos(theta), 0],
            [0, 0, 0, 1],
        ]
    )
    ry = np.array(
        [[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]]
    )
    t = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    p2 = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return p2 @ t @ rx @ ry @ p1


def legacy_warp_perspective(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``cv2.warpPerspective(image, matrix, (w, h))`` as OpenCV computed it until 4.x: source
    positions (double) rounded to 1/32 pixel, then OpenCV's fixed-point bilinear remap
    (which ``cv2.remap`` still runs for fixed-point maps). OpenCV 5 interpolates warps in
    floating point instead (opencv/opencv#29047), up to 8 levels apart at sharp edges."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y, z = np.einsum("ij,jhw->ihw", np.linalg.inv(matrix), np.stack([xs, ys, np.ones_like(xs)]))
    fixed_x, fixed_y = (np.rint(v / z * 32).astype(np.int32) for v in (x, y))
    whole = np.stack([fixed_x >> 5, fixed_y >> 5], axis=-1).astype(np.int16)
    fraction = ((fixed_y & 31) * 32 + (fixed_x & 31)).astype(np.uint16)
    return cv2.remap(image, whole, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def tilt(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    return np.stack(
        [legacy_warp_perspective(image, _tilt_homography(h, w, a)) for a in FRAME_PARAMETERS["tilt"]]
    )


# --------------------------------------------------------------------------- blur and digital


def motion_blur(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    frames = [
        _imagemagick_uint8(_motion_blur(image, MOTION_BLUR.radius, MOTION_BLUR.sigma, angle))
        for angle in FRAME_PARAMETERS["motion_blur"]
    ]
    return np.stack(frames)


def zoom_blur(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """Running mean of ``ToTensor`` frames (float32), shown through ``ToPILImage`` (x 255,
    truncated)."""
    running = image.astype(np.float32) / np.float32(255)
    frames = [image]
    for i, zoom in enumerate(FRAME_PARAMETERS["zoom_blur"][1:], start=1):
        running = running + _affine(image, Image.BILINEAR, scale=zoom).astype(np.float32) / np.float32(255)
        frames.append(_to_uint8(running / np.float32(i + 1) * np.float32(255)))
    return np.stack(frames)


def gaussian_blur(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    x = image / 255.0
    frames = [
        _to_uint8(255 * gaussian(x, sigma=sigma, channel_axis=-1, truncate=GAUSSIAN_BLUR_TRUNCATE))
        for sigma in FRAME_PARAMETERS["gaussian_blur"]
    ]
    return np.stack(frames)


def brightness(image: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    frames = []
    for shift in FRAME_PARAMETERS["brightness"]:
        hsv = skimage.color.rgb2hsv(image / 255.0)
        hsv[:, :, 2] = np.clip(hsv[:, :, 2] + shift, 0, 1)
        frames.append(_to_uint8(skimage.color.hsv2rgb(hsv) * 255))
    return np.stack(frames)


# --------------------------------------------------------------------------- weather


def snow_from_layer(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """Snow frames given the (H, W) draw ``layer`` ~ N(0.05, 0.3^2)."""
    x = image / 255.0
    layer = clipped_zoom(layer[..., np.newaxis], SNOW.zoom)
    layer[layer < SNOW.threshold] = 0
    layer_png = _to_uint8(np.clip(layer.squeeze(), 0, 1) * 255)  # the image handed to ImageMagick
    grey = cv2.cvtColor(np.float32(x), cv2.COLOR_RGB2GRAY)[..., np.newaxis]
    whitened = SNOW.blend * x + (1 - SNOW.blend) * np.maximum(x, grey * 1.5 + 0.5)
    frames = []
    for angle in FRAME_PARAMETERS["snow"]:
        moving = _imagemagick_uint8(_motion_blur(layer_png, SNOW.blur_radius, SNOW.blur_sigma, angle))
        moving = (moving / 255.0)[..., np.newaxis]
        frames.append(_to_uint8(np.clip(whitened + moving + np.rot90(moving, k=2), 0, 1) * 255))
    return np.stack(frames)


def snow(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return snow_from_layer(image, rng.normal(SNOW.mean, SNOW.std, image.shape[:2]))


def _water_mask(liquid_uint8: np.ndarray) -> np.ndarray:
    dist = 255 - cv2.Canny(liquid_uint8, 50, 150)
    dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
    dist = cv2.equalizeHist(dist)
    dist = cv2.filter2D(dist, cv2.CV_8U, EMBOSS)
    dist = cv2.blur(dist, (3, 3)).astype(np.float32)
    return cv2.cvtColor(liquid_uint8 * dist, cv2.COLOR_GRAY2BGRA)


def spatter_from_liquid(image: np.ndarray, liquid: np.ndarray) -> np.ndarray:
    """Spatter frames given the (H, W) draw ``liquid`` ~ N(0.6, 0.265^2)."""
    x = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_BGR2BGRA)
    liquid = gaussian(liquid, sigma=SPATTER.sigma)
    liquid[liquid < SPATTER.threshold] = 0
    colour = (np.ones(image.shape[:2] + (1,)) * (np.array(WATER_RGB) / 255.0)).astype(np.float32)
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    frames = []
    for _ in range(SPATTER_FRAMES):
        mask = _water_mask((liquid * 255).astype(np.uint8))
        peak = np.max(mask, axis=(0, 1))
        mask = np.divide(mask, peak, out=np.zeros_like(mask), where=peak > 0) * np.float32(SPATTER.intensity)
        frames.append(_to_uint8(cv2.cvtColor(np.clip(x + mask * colour, 0, 1), cv2.COLOR_BGRA2BGR) * 255))
        # the liquid flows down one step per frame
        liquid = np.apply_along_axis(lambda column: np.convolve(column, SPATTER_FLOW, mode="same"), 0, liquid)
    return np.stack(frames)


def spatter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return spatter_from_liquid(image, rng.normal(SPATTER.mean, SPATTER.std, image.shape[:2]))


REFERENCE_FUNCTIONS: dict[str, ReferenceFunction] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "spatter": spatter,
    "brightness": brightness,
    "translate": translate,
    "rotate": rotate,
    "tilt": tilt,
    "scale": scale,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "shear": shear,
    "snow": snow,
}
