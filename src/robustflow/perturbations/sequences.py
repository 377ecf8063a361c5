"""One function per CIFAR-10-P perturbation: uint8 (N, C, H, W) -> uint8 (N, T, C, H, W).

Each follows ``make_cifar_p.py`` (hendrycks/robustness) frame for frame, built from the
CIFAR-10-C engine's blocks called with the CIFAR-10-P frame parameters (``params``), and
converts to 8 bits where and as the reference does: truncation after NumPy / torch / Pillow
arithmetic, rounding after ImageMagick (motion blur, the snow layer) and OpenCV (tilt).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from robustflow.corruptions import _ops, digital, noise, weather

from . import warps
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

SequenceFunction = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]

# The reference truncates floats to 8 bits (np.uint8, Tensor.byte(), Pillow). Round-off can put
# a value that is exactly k at k - 1e-13, which then drops to k - 1 (the reference's brightness
# frame 15, a shift of 0, returns a fifth of the values of a random image one level low); this
# slack, in grey levels, keeps exact values exact and moves others only within 1e-3 of a level.
TRUNCATION_SLACK = 1e-3


def truncate_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Values on the 0..255 scale, clipped and truncated (float to uint8 casts truncate)."""
    return values.clamp(0.0, 255.0).add_(TRUNCATION_SLACK).to(torch.uint8)


def round_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Values on the 0..255 scale, clipped and rounded to nearest (halves up, as OpenCV)."""
    return values.clamp(0.0, 255.0).add_(0.5).to(torch.uint8)


def _unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 on [0, 1], as ``ToTensor`` and ``np.array(img) / 255``."""
    return images.float() / 255.0


def _each_frame(x: torch.Tensor, t: int) -> torch.Tensor:
    """(N, ...) -> (N * T, ...): every image repeated for its T frames, image-major."""
    return x[:, None].expand(-1, t, *x.shape[1:]).reshape(-1, *x.shape[1:])


def _as_sequences(frames: torch.Tensor, n: int) -> torch.Tensor:
    """(N * T, ...) -> (N, T, ...)."""
    return frames.reshape(n, -1, *frames.shape[1:])


# --------------------------------------------------------------------------- noise


def _noise_sequence(images: torch.Tensor, add_noise: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Frame 0 the clean image, frames 1..30 independent noisy copies.

    ``add_noise`` works on the 0..255 scale (each noise is linear in the scale, so the
    CIFAR-10-C op runs there with its parameter rescaled): one pass less over all frames.
    """
    n = images.shape[0]
    clean = images.float()[:, None].expand(n, NOISE_FRAMES - 1, *images.shape[1:])  # a view, no copy
    return torch.cat([images[:, None], truncate_to_uint8(add_noise(clean))], dim=1)


def gaussian_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _noise_sequence(images, lambda x: noise.gaussian_noise(x, 255.0 * GAUSSIAN_NOISE_STD, generator))


def shot_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    # 255 Poisson(x rate) / rate = Poisson(v r) / r for v = 255 x and r = rate / 255 per grey level
    return _noise_sequence(images, lambda x: noise.shot_noise(x, SHOT_NOISE_RATE / 255.0, generator))


def speckle_noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return _noise_sequence(images, lambda x: noise.speckle_noise(x, SPECKLE_NOISE_STD, generator))


# --------------------------------------------------------------------------- blur


def motion_blur(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Motion blur (radius 6, sigma 1.8) at angles -180, -171, ..., 0 degrees (21 frames)."""
    angles = torch.tensor(FRAME_PARAMETERS["motion_blur"], dtype=torch.float64)
    x = _unit(_each_frame(images, len(angles)))
    blurred = _ops.motion_blur(x, MOTION_BLUR.radius, MOTION_BLUR.sigma, angles.repeat(images.shape[0]))
    return _as_sequences(round_to_uint8(blurred * 255.0), images.shape[0])


def zoom_blur(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Frame i: the mean of the image and its centre zooms by 1.004, ..., 1 + 0.004 i, each
    zoom an 8-bit Pillow frame, truncated. The mean is taken of the integer frames on the
    0..255 scale, where it is exact; the reference averages ``ToTensor`` frames (k / 255 in
    float32), whose round-off puts about 4% of its values one level lower."""
    h, w = images.shape[-2:]
    zooms = FRAME_PARAMETERS["zoom_blur"][1:]
    forward = tuple(tuple(warps.torchvision_affine(0.0, zoom, 0.0).ravel()) for zoom in zooms)
    zoomed = truncate_to_uint8(warps.pil_bilinear(images.float(), warps.pil_affine_source(h, w, forward)))
    frames = torch.cat([images[:, None], zoomed], dim=1).float()
    counts = torch.arange(1, frames.shape[1] + 1, dtype=frames.dtype, device=frames.device)
    return truncate_to_uint8(frames.cumsum(dim=1) / counts[:, None, None, None])


def gaussian_blur(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``skimage.filters.gaussian`` (edge pixels repeated, truncated at 7 sigma), sigma 0.3 to
    0.75 in steps of 0.015."""
    x = _unit(images)
    frames = [
        _ops.gaussian_filter(x, sigma, mode="nearest", truncate=GAUSSIAN_BLUR_TRUNCATE)
        for sigma in FRAME_PARAMETERS["gaussian_blur"]
    ]
    return truncate_to_uint8(torch.stack(frames, dim=1) * 255.0)


# --------------------------------------------------------------------------- weather


def snow_from_layer(images: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
    """Snow given each image's draw ``layer`` (N, 1, H, W) ~ N(0.05, 0.3^2).

    The layer is zoomed by 2, thresholded at 0.5 and stored as the 8-bit image the reference
    hands to ImageMagick once; each frame blurs it along its own angle (radius 10, sigma 2).
    """
    n, _, h, w = images.shape
    layer = _ops.apply_separable_matrices(
        layer, _ops.clipped_zoom_matrix(h, SNOW.zoom), _ops.clipped_zoom_matrix(w, SNOW.zoom)
    )
    layer = torch.where(layer < SNOW.threshold, torch.zeros_like(layer), layer)
    layer = truncate_to_uint8(layer * 255.0).to(torch.float32) / 255.0
    angles = torch.tensor(FRAME_PARAMETERS["snow"], dtype=torch.float64)
    t = len(angles)
    # Zoom and threshold are done: zoom 1 and threshold 0 make the engine's own no-ops.
    per_frame = SNOW._replace(zoom=1.0, threshold=0.0)
    layer = _as_sequences(weather.smeared_snow(per_frame, _each_frame(layer, t), angles.repeat(n), (h, w)), n)
    # The image under the snow is the same in every frame: whitened once, added to each.
    snowy = weather.whitened(_unit(images), SNOW)[:, None] + layer + layer.flip(-2, -1)
    return truncate_to_uint8(snowy * 255.0)


def snow(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    layer = _ops.normal((n, 1, h, w), SNOW.mean, SNOW.std, generator, _unit(images[:0]))
    return snow_from_layer(images, layer)


def _flow_down(liquid: torch.Tensor) -> torch.Tensor:
    """One step of the reference's ``np.convolve(column, [0.2, 0.8], 'same')`` on every
    column: row r becomes 0.2 row r + 0.8 row r - 1 (nothing above the first row)."""
    own, above = SPATTER_FLOW
    flowed = own * liquid
    flowed[..., 1:, :] += above * liquid[..., :-1, :]
    return flowed


def spatter_from_liquid(images: torch.Tensor, liquid: torch.Tensor) -> torch.Tensor:
    """Water spatter given each image's draw ``liquid`` (N, 1, H, W) ~ N(0.6, 0.265^2).

    The liquid is smoothed (sigma 1.75) and thresholded (0.7) once; frame i shows it after i
    steps of :func:`_flow_down`, through the CIFAR-10-C water-drop mask. The reference divides
    by the mask's maximum, which is 0 where no liquid passed the threshold (about 1% of draws)
    or all of it has flowed out of the image; its frames are then NaN cast to uint8, here the
    clean image.
    """
    liquid = _ops.gaussian_filter(liquid.double(), SPATTER.sigma)
    liquid = torch.where(liquid < SPATTER.threshold, torch.zeros_like(liquid), liquid)
    layers = [liquid]
    for _ in range(SPATTER_FRAMES - 1):
        layers.append(_flow_down(layers[-1]))
    # The flow runs in float64 like the reference's; the mask in float32 like its cv2 arithmetic
    # (and twice as fast: float64 convolutions are slow on CPUs).
    liquid_frames = torch.stack(layers, dim=1).reshape(-1, *liquid.shape[1:]).float()
    # Smoothing and threshold are done: sigma 0 and threshold 0 make the engine's own no-ops.
    per_frame = SPATTER._replace(sigma=0.0, threshold=0.0)
    wet = weather.spatter_from_draws(_unit(_each_frame(images, SPATTER_FRAMES)), per_frame, liquid_frames)
    return _as_sequences(truncate_to_uint8(wet * 255.0), images.shape[0])


def spatter(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = images.shape
    like = torch.empty(0, dtype=torch.float64, device=images.device)
    return spatter_from_liquid(images, _ops.normal((n, 1, h, w), SPATTER.mean, SPATTER.std, generator, like))


# --------------------------------------------------------------------------- digital


def brightness(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """HSV value shifted by -0.225 .. 0.225 in steps of 0.015 (frame 15 unchanged)."""
    x = _unit(images)
    frames = [digital.brightness(x, shift, generator) for shift in FRAME_PARAMETERS["brightness"]]
    return truncate_to_uint8(torch.stack(frames, dim=1) * 255.0)


# --------------------------------------------------------------------------- geometric


def translate(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Horizontal shifts by -7 .. +8 pixels, black where the image left (Pillow NEAREST at
    whole-pixel offsets: exact copies)."""
    n, c, h, w = images.shape
    shifts = [int(shift) for shift in FRAME_PARAMETERS["translate"]]
    out = torch.zeros(n, len(shifts), c, h, w, dtype=torch.uint8, device=images.device)
    for frame, shift in enumerate(shifts):
        if abs(shift) >= w:
            continue  # the whole image left the frame
        if shift >= 0:
            out[:, frame, ..., shift:] = images[..., : w - shift]
        else:
            out[:, frame, ..., :shift] = images[..., -shift:]
    return out


def _torchvision_affine_sequence(images: torch.Tensor, forward: list) -> torch.Tensor:
    h, w = images.shape[-2:]
    source = warps.pil_affine_source(h, w, tuple(tuple(matrix.ravel()) for matrix in forward))
    return truncate_to_uint8(warps.pil_bilinear(images.float(), source))


def rotate(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotations by -15 .. 15 degrees (clockwise), bilinear."""
    angles = FRAME_PARAMETERS["rotate"]
    return _torchvision_affine_sequence(images, [warps.torchvision_affine(a, 1.0, 0.0) for a in angles])


def shear(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shears by -15 .. 15 degrees, bilinear."""
    angles = FRAME_PARAMETERS["shear"]
    return _torchvision_affine_sequence(images, [warps.torchvision_affine(0.0, 1.0, a) for a in angles])


def scale(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zooms by 0.70 .. 1.30 about the centre, bilinear, black outside."""
    zooms = FRAME_PARAMETERS["scale"]
    return _torchvision_affine_sequence(images, [warps.torchvision_affine(0.0, z, 0.0) for z in zooms])


def tilt(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Perspective tilts, both angles -11.25 .. 11.25 degrees (``cv2.warpPerspective``)."""
    h, w = images.shape[-2:]
    matrices = tuple(tuple(warps.tilt_matrix(h, w, a).ravel()) for a in FRAME_PARAMETERS["tilt"])
    source = warps.opencv_perspective_source(h, w, matrices)
    return round_to_uint8(warps.opencv_bilinear(images.float(), source))


SEQUENCE_FUNCTIONS: dict[str, SequenceFunction] = {
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
