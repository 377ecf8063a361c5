"""Weather corruptions: fog, frost, snow, spatter."""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import _ops
from .params import FogParams, FrostParams, SnowParams, SpatterParams

FROST_TEXTURES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")
# The CIFAR-10-C script (make_cifar_c.py) draws np.random.randint(5), so frost6 never appears,
# and shrinks the photographs by 0.2 (cv2.resize, bilinear) before cropping 32x32.
FROST_TEXTURES_DRAWN = 5
FROST_SCALE_AT_32 = 0.2

# --------------------------------------------------------------------------- fog


def plasma_fractal(
    n_maps: int,
    mapsize: int,
    wibble_decay: float,
    unit_uniform: Callable[[tuple[int, ...]], torch.Tensor],
    like: torch.Tensor,
) -> torch.Tensor:
    """Diamond-square height maps (N, mapsize, mapsize) in [0, 1], as ``imagecorruptions``'
    ``plasma_fractal`` (including its noise amplitude of ``wibble**2``), one per image.

    ``unit_uniform(shape)`` supplies U[0, 1) draws; the reference's ``uniform(-wibble, wibble)``
    is ``-wibble + 2 * wibble * u``. The maps get the dtype and device of ``like``.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    step, wibble = mapsize, 100.0
    grid = torch.zeros(n_maps, mapsize, mapsize, dtype=like.dtype, device=like.device)

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        u = unit_uniform(tuple(total.shape)).to(like.device, like.dtype)
        return total / 4 + wibble * (-wibble + 2 * wibble * u)

    while step >= 2:
        half = step // 2
        corners = grid[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        grid[:, half::step, half::step] = wibbled_mean(squares)
        centres = grid[:, half::step, half::step]
        corners = grid[:, 0::step, 0::step]
        across = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        grid[:, 0::step, half::step] = wibbled_mean(across)
        down = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        grid[:, half::step, 0::step] = wibbled_mean(down)
        step //= 2
        wibble /= wibble_decay
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def fog_with_plasma(x: torch.Tensor, params: FogParams, plasma: torch.Tensor) -> torch.Tensor:
    """Add ``strength * plasma`` (N, >=H, >=W) and rescale so the image maximum is kept."""
    h, w = x.shape[-2:]
    max_val = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + params.strength * plasma[:, None, :h, :w]) * max_val / (max_val + params.strength)


def fog(x: torch.Tensor, params: FogParams, generator: torch.Generator) -> torch.Tensor:
    """Fog: a plasma fractal per image (side: the next power of two)."""
    n, _, h, w = x.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()
    plasma = plasma_fractal(
        n, mapsize, params.wibble_decay, lambda shape: _ops.uniform(shape, 0.0, 1.0, generator, x), x
    )
    return fog_with_plasma(x, params, plasma)


# --------------------------------------------------------------------------- frost


@lru_cache(maxsize=1)
def frost_textures() -> tuple[np.ndarray, ...]:
    """The six frost photographs shipped with ``imagecorruptions`` (uint8 HWC, RGB)."""
    try:
        folder = importlib.resources.files("imagecorruptions") / "frost"
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "frost needs the textures shipped with imagecorruptions-imaug: "
            "pip install imagecorruptions-imaug (a robustflow dependency)"
        ) from error
    textures = []
    for name in FROST_TEXTURES:
        with importlib.resources.as_file(folder / name) as path, Image.open(path) as image:
            textures.append(np.array(image.convert("RGB")))
    return tuple(textures)


@lru_cache(maxsize=8)
def _frost_bank(
    h: int, w: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resized textures padded into one (6, 3, Hmax, Wmax) tensor (0..255) and their sizes.

    Textures are shrunk bilinearly (no antialiasing, like ``cv2.resize``) by 0.2 for 32-pixel
    images, proportionally for other sizes, and never below one pixel more than the image.
    """
    resized = []
    for texture in frost_textures():
        th, tw = texture.shape[:2]
        scale = FROST_SCALE_AT_32 * max(h, w) / 32
        new_h, new_w = max(int(round(th * scale)), h + 1), max(int(round(tw * scale)), w + 1)
        t = torch.as_tensor(texture, dtype=torch.float64).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=False)
        resized.append(t[0].round().clamp(0, 255))
    max_h = max(t.shape[1] for t in resized)
    max_w = max(t.shape[2] for t in resized)
    bank = torch.zeros(len(resized), 3, max_h, max_w, dtype=dtype)
    for i, t in enumerate(resized):
        bank[i, :, : t.shape[1], : t.shape[2]] = t.to(dtype)
    sizes = torch.tensor([[t.shape[1], t.shape[2]] for t in resized])
    return bank.to(device), sizes.to(device)


def frost(x: torch.Tensor, params: FrostParams, generator: torch.Generator) -> torch.Tensor:
    """Blend each image with a random crop of one of the first five frost textures."""
    n, _, h, w = x.shape
    bank, sizes = _frost_bank(h, w, x.device, x.dtype)
    which = torch.randint(0, FROST_TEXTURES_DRAWN, (n,), generator=generator, device=generator.device).to(
        x.device
    )
    # Crop corners uniform on [0, size - image size), as np.random.randint in the reference.
    spans = (sizes[which] - torch.tensor([h, w], device=x.device)).to(x.dtype)
    corners = torch.floor(_ops.uniform((n, 2), 0.0, 1.0, generator, x) * spans).long()
    rows = corners[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = corners[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    crops = bank[which[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (N, H, W, 3)
    return params.image_weight * x + params.frost_weight * crops.permute(0, 3, 1, 2) / 255.0


# --------------------------------------------------------------------------- snow


def snow_from_draws(
    x: torch.Tensor, params: SnowParams, layer: torch.Tensor, angles: torch.Tensor
) -> torch.Tensor:
    """Snow given its draws: ``layer`` (N, 1, H, W) ~ N(mean, std^2) and blur ``angles`` (N,)."""
    layer = smeared_snow(params, layer, angles, x.shape[-2:])
    return whitened(x, params) + layer + layer.flip(-2, -1)


def smeared_snow(params: SnowParams, layer: torch.Tensor, angles: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The snow layer zoomed, thresholded and smeared along each angle, rounded to 8 bits: it
    is added to the whitened image once as it is and once rotated by 180 degrees."""
    h, w = size
    # The reference blurs the whole zoomed layer, which can exceed the image by a few pixels,
    # and crops it afterwards; the border pixels it repeats are those of the larger layer.
    layer = _ops.apply_separable_matrices(
        layer,
        _ops.clipped_zoom_matrix(h, params.zoom, trim=False),
        _ops.clipped_zoom_matrix(w, params.zoom, trim=False),
    )
    layer = torch.where(layer < params.threshold, torch.zeros_like(layer), layer).clamp(0.0, 1.0)
    layer = _ops.motion_blur(layer, params.blur_radius, params.blur_sigma, angles)[..., :h, :w]
    return torch.round(layer * 255.0) / 255.0  # the reference rounds the layer to 8 bits


def whitened(x: torch.Tensor, params: SnowParams) -> torch.Tensor:
    """The image snow falls on: blended towards the maximum of itself and a brightened grey."""
    white = torch.maximum(x, _ops.rgb_to_gray(x) * 1.5 + 0.5)
    return params.blend * x + (1.0 - params.blend) * white


def snow(x: torch.Tensor, params: SnowParams, generator: torch.Generator) -> torch.Tensor:
    """Thresholded, zoomed Gaussian noise smeared by motion blur (one direction in
    [-135, -45] degrees per image), added twice (once rotated by 180 degrees) to an image
    brightened towards a whitened greyscale."""
    n, _, h, w = x.shape
    layer = _ops.normal((n, 1, h, w), params.mean, params.std, generator, x)
    angles = _ops.uniform((n,), -135.0, -45.0, generator, x)
    return snow_from_draws(x, params, layer, angles)


# --------------------------------------------------------------------------- spatter

WATER_RGB = (175.0, 238.0, 238.0)  # pale turquoise
MUD_RGB = (63.0, 42.0, 20.0)  # brown
# cv2.Canny's fixed-point tangent of 22.5 degrees (CANNY_SHIFT = 15)
_CANNY_SHIFT = 15
_CANNY_TG22 = int(0.4142135623730950488016887242097 * (1 << _CANNY_SHIFT) + 0.5)
# cv2.distanceTransform(DIST_L2, 5): cost of a straight, diagonal and knight's-move step
_CHAMFER_STEP_COSTS = (1.0, 1.4, 2.1969)


def canny(image: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """``cv2.Canny(image, low, high)`` (3x3 Sobel with replicated border, L1 magnitude,
    fixed-point direction bins, hysteresis over 8-neighbours) on (N, 1, H, W) integer-valued
    float images; returns a boolean edge map."""
    smooth, derivative = np.array([1.0, 2.0, 1.0]), np.array([-1.0, 0.0, 1.0])
    # int32 suffices: the largest fixed-point term is 1020 * (13573 + 2**16) < 2**31
    gx = _ops.separable_filter(image, smooth, derivative, "nearest").round().int()
    gy = _ops.separable_filter(image, derivative, smooth, "nearest").round().int()
    mag = gx.abs() + gy.abs()
    h, w = mag.shape[-2:]
    padded = F.pad(mag, (1, 1, 1, 1))  # magnitudes outside the image are 0

    def neighbour(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs() << _CANNY_SHIFT
    tg22x = ax * _CANNY_TG22
    tg67x = tg22x + (ax << (_CANNY_SHIFT + 1))
    horizontal = ay < tg22x
    vertical = ~horizontal & (ay > tg67x)
    same_sign = (gx < 0) == (gy < 0)
    peak_h = (mag > neighbour(0, -1)) & (mag >= neighbour(0, 1))
    peak_v = (mag > neighbour(-1, 0)) & (mag >= neighbour(1, 0))
    peak_d = torch.where(
        same_sign,
        (mag > neighbour(-1, -1)) & (mag > neighbour(1, 1)),
        (mag > neighbour(-1, 1)) & (mag > neighbour(1, -1)),
    )
    peak = torch.where(horizontal, peak_h, torch.where(vertical, peak_v, peak_d))
    candidate = (mag > low) & peak
    edges = candidate & (mag > high)
    while True:
        grown = edges | (candidate & _dilate3x3(edges))
        if torch.equal(grown, edges):
            return edges
        edges = grown


def _dilate3x3(mask: torch.Tensor) -> torch.Tensor:
    """Boolean 3x3 dilation of the last two axes (8-neighbourhood, nothing outside)."""
    rows = mask.clone()
    rows[..., :, 1:] |= mask[..., :, :-1]
    rows[..., :, :-1] |= mask[..., :, 1:]
    out = rows.clone()
    out[..., 1:, :] |= rows[..., :-1, :]
    out[..., :-1, :] |= rows[..., 1:, :]
    return out


def chamfer_distance(edges: torch.Tensor, cap: float) -> torch.Tensor:
    """``min(cv2.distanceTransform(~edges, DIST_L2, 5), cap)``: 5x5 chamfer distance to the
    nearest edge pixel (steps 1, 1.4 and 2.1969), by OpenCV's two raster passes.

    The passes run on the whole batch at once, a row at a time: the candidates from the two rows
    already done are taken for all columns together, then the row's own neighbour column by
    column, so every sum is the float32 addition OpenCV makes and the distances are its own.
    """
    h, w = edges.shape[-2:]
    straight, diagonal, knight = (torch.tensor(cost, dtype=torch.float32) for cost in _CHAMFER_STEP_COSTS)
    # (H + 4, W + 4, B): each pixel's batch contiguous; a border of 2 at the cap, which no
    # path through it can undercut.
    inside = torch.where(edges, 0.0, cap).float().reshape(-1, h, w).permute(1, 2, 0)
    dist = F.pad(inside, (0, 0, 2, 2, 2, 2), value=cap)
    columns = slice(2, w + 2)
    for rows, step in ((range(2, h + 2), 1), (range(h + 1, 1, -1), -1)):
        for i in rows:
            near, far = dist[i - step], dist[i - 2 * step]  # (W + 4, B), the rows done before
            if step < 0:  # the backward pass mirrors the forward pass's mask left to right
                near, far = near.flip(0), far.flip(0)
            row = dist[i, columns] if step > 0 else dist[i, columns].flip(0)
            row = torch.minimum(row, torch.minimum(far[1 : w + 1], far[3 : w + 3]) + knight)
            row = torch.minimum(row, torch.minimum(near[0:w], near[4 : w + 4]) + knight)
            row = torch.minimum(row, torch.minimum(near[1 : w + 1], near[3 : w + 3]) + diagonal)
            row = torch.minimum(row, near[2 : w + 2] + straight)
            for j in range(1, w):  # the neighbour in the row, done just before
                torch.minimum(row[j], row[j - 1] + straight, out=row[j])
            dist[i, columns] = row if step > 0 else row.flip(0)
    return dist[2 : h + 2, columns].permute(2, 0, 1).reshape(edges.shape)


def equalize_hist(image: torch.Tensor) -> torch.Tensor:
    """``cv2.equalizeHist`` per image on (N, 1, H, W) integer-valued float images."""
    n = image.shape[0]
    values = image.reshape(n, -1).long()
    total = values.shape[1]
    hist = torch.zeros(n, 256, dtype=torch.long, device=image.device)
    hist.scatter_add_(1, values, torch.ones_like(values))
    cdf = hist.cumsum(1)
    lowest = (hist > 0).long().argmax(1, keepdim=True)
    lowest_count = hist.gather(1, lowest)
    constant = lowest_count == total
    scale = 255.0 / (total - lowest_count).clamp(min=1).float()
    lut = ((cdf - lowest_count).float() * scale).round().clamp(0, 255)
    lut = torch.where(constant, lowest.float(), lut)
    return lut.gather(1, values).reshape(image.shape).to(image.dtype)


def water_mask(liquid_uint8: torch.Tensor) -> torch.Tensor:
    """The water-drop weight ``liquid * dist`` of ``imagecorruptions``' spatter (before the
    per-image normalisation), from the 8-bit liquid layer (N, 1, H, W) with integer values.

    Steps follow the reference: Canny edges, distance to them (capped at 20), 3x3 mean, 8-bit
    truncation, histogram equalisation, an emboss filter saturated to 8 bits, 3x3 mean rounded
    to 8 bits. The arithmetic follows OpenCV's (float32 distances, box sums in float64), so the
    truncations fall on the same side.
    """
    edges = canny(liquid_uint8, 50, 150)
    dist = chamfer_distance(edges, 20.0)
    dist = torch.floor((_box_sum3(dist.double()) * (1.0 / 9.0)).float())
    dist = equalize_hist(dist)
    emboss = torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])
    dist = _ops.correlate2d(dist, emboss, "reflect101").round().clamp(0, 255)
    dist = torch.round(_box_sum3(dist) / 9.0)  # cv2.blur of a uint8 image is uint8
    return liquid_uint8 * dist.to(liquid_uint8.dtype)


def _box_sum3(x: torch.Tensor) -> torch.Tensor:
    """Sum over each 3x3 neighbourhood, reflect-101 border (``cv2.blur`` before scaling)."""
    return _ops.separable_filter(x, np.ones(3), np.ones(3), "reflect101")


def spatter_from_draws(x: torch.Tensor, params: SpatterParams, liquid: torch.Tensor) -> torch.Tensor:
    """Spatter given its liquid layer (N, 1, H, W) ~ N(mean, std^2)."""
    liquid = _ops.gaussian_filter(liquid, params.sigma)
    liquid = torch.where(liquid < params.threshold, torch.zeros_like(liquid), liquid)
    if params.mud:
        # In mud mode the reference uses the intensity entry as the mask's blur sigma.
        mask = _ops.gaussian_filter((liquid > params.threshold).to(x.dtype), params.intensity)
        mask = torch.where(mask < 0.8, torch.zeros_like(mask), mask)
        colour = torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device)[None, :, None, None] / 255.0
        return x * (1.0 - mask) + colour * mask
    # The reference casts liquid * 255 to uint8, which on x86 wraps the rare values above 255
    # (liquid > 1, a few sigma out) around to small ones; reproduced here.
    liquid_uint8 = torch.floor(liquid * 255.0).remainder(256.0)
    weight = water_mask(liquid_uint8)
    peak = weight.amax(dim=(1, 2, 3), keepdim=True)
    weight = (
        torch.where(peak > 0, weight / peak.clamp(min=1e-12), torch.zeros_like(weight)) * params.intensity
    )
    colour = torch.tensor(WATER_RGB, dtype=x.dtype, device=x.device)[None, :, None, None] / 255.0
    return x + weight * colour


def spatter(x: torch.Tensor, params: SpatterParams, generator: torch.Generator) -> torch.Tensor:
    """Water drops (pale turquoise, edge-shaded) or mud splashes (brown, opaque) from a
    thresholded, smoothed Gaussian liquid layer."""
    n, _, h, w = x.shape
    liquid = _ops.normal((n, 1, h, w), params.mean, params.std, generator, x)
    return spatter_from_draws(x, params, liquid)
