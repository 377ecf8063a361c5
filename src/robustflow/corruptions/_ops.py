"""Batched building blocks shared by the corruptions: random draws, border handling, filters,
resampling matrices, motion blur and luma.

Each block mirrors the SciPy / scikit-image / OpenCV / Pillow routine that the CIFAR-10-C code
(as packaged in ``imagecorruptions``) calls, including its border mode, so that the batched
versions reproduce the reference per-image results.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

# --------------------------------------------------------------------------- random draws
# Numbers are drawn on the generator's device and then moved, so a CPU generator works for
# CUDA images and the stream depends only on the generator.


def uniform(
    shape: tuple[int, ...],
    low: float,
    high: float,
    generator: torch.Generator,
    like: torch.Tensor,
) -> torch.Tensor:
    """Uniform draws in [low, high) with the dtype and device of ``like``."""
    u = torch.rand(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (low + (high - low) * u).to(like.device)


def normal(
    shape: tuple[int, ...],
    mean: float,
    std: float,
    generator: torch.Generator,
    like: torch.Tensor,
) -> torch.Tensor:
    """Normal draws with the dtype and device of ``like``."""
    z = torch.randn(shape, generator=generator, device=generator.device, dtype=like.dtype)
    return (mean + std * z).to(like.device)


# --------------------------------------------------------------------------- borders


def border_indices(n: int, pad: int, mode: str) -> np.ndarray:
    """Source index for each position of an axis of length ``n`` padded by ``pad`` per side.

    Modes: ``nearest`` (edge repeated, SciPy 'nearest'), ``reflect`` (edge pixel repeated in the
    mirror, SciPy 'reflect': d c b a | a b c d), ``reflect101`` (mirror about the edge pixel,
    OpenCV's default: d c b | a b c d).
    """
    i = np.arange(-pad, n + pad)
    if mode == "nearest":
        return np.clip(i, 0, n - 1)
    if mode == "reflect":
        j = i % (2 * n)
        return np.where(j >= n, 2 * n - 1 - j, j)
    if mode == "reflect101":
        if n == 1:
            return np.zeros_like(i)
        j = i % (2 * n - 2)
        return np.where(j >= n, 2 * n - 2 - j, j)
    raise ValueError(f"mode must be 'nearest', 'reflect' or 'reflect101', got {mode!r}")


# --------------------------------------------------------------------------- filters


def gaussian_kernel1d(sigma: float, truncate: float) -> np.ndarray:
    """SciPy's Gaussian kernel: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 / sigma**2 * offsets**2)
    return kernel / kernel.sum()


@lru_cache(maxsize=512)
def filter_matrix(n: int, kernel: tuple[float, ...], mode: str) -> np.ndarray:
    """(n, n) matrix of the 1-D correlation with ``kernel`` (odd length) on an axis of length
    ``n``, border handled as in :func:`border_indices`. Small images are filtered fastest as
    one matrix product per axis."""
    radius = len(kernel) // 2
    source = border_indices(n, radius, mode)
    matrix = np.zeros((n, n))
    rows = np.arange(n)
    for j, weight in enumerate(kernel):
        np.add.at(matrix, (rows, source[rows + j]), weight)
    return matrix


def separable_filter(x: torch.Tensor, kernel_h: np.ndarray, kernel_w: np.ndarray, mode: str) -> torch.Tensor:
    """Correlate the columns of every channel of ``x`` (N, C, H, W) with ``kernel_h`` and the
    rows with ``kernel_w``."""
    h, w = x.shape[-2:]
    rows = filter_matrix(h, tuple(float(k) for k in kernel_h), mode)
    cols = filter_matrix(w, tuple(float(k) for k in kernel_w), mode)
    return apply_separable_matrices(x, rows, cols)


def correlate2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with one small 2-D kernel (odd sides):
    a weighted sum of shifted views of the padded batch, one per non-zero tap (on CPUs a
    single-channel ``conv2d`` is several times slower)."""
    h, w = x.shape[-2:]
    kh, kw = kernel.shape
    device = x.device
    padded = x.index_select(-2, torch.as_tensor(border_indices(h, kh // 2, mode), device=device))
    padded = padded.index_select(-1, torch.as_tensor(border_indices(w, kw // 2, mode), device=device))
    out = torch.zeros_like(x)
    for (dy, dx), weight in np.ndenumerate(kernel.detach().cpu().numpy()):
        if weight:
            out.add_(padded[..., dy : dy + h, dx : dx + w], alpha=float(weight))
    return out


def gaussian_filter(
    x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0
) -> torch.Tensor:
    """``skimage.filters.gaussian`` per channel (SciPy semantics; sigma 0 leaves x unchanged)."""
    if sigma <= 1e-15:
        return x
    kernel = gaussian_kernel1d(sigma, truncate)
    return separable_filter(x, kernel, kernel, mode)


# --------------------------------------------------------------------------- resampling


def _linear_interp_matrix(coords: np.ndarray, n_in: int, offset: int, n_total: int) -> np.ndarray:
    """Rows of linear-interpolation weights sampling an axis at ``coords`` (in-range)."""
    matrix = np.zeros((len(coords), n_total))
    lo = np.clip(np.floor(coords).astype(int), 0, n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = coords - lo
    rows = np.arange(len(coords))
    np.add.at(matrix, (rows, offset + lo), 1.0 - frac)
    np.add.at(matrix, (rows, offset + hi), frac)
    return matrix


@lru_cache(maxsize=256)
def clipped_zoom_matrix(n: int, zoom: float, trim: bool = True) -> np.ndarray:
    """Matrix of ``imagecorruptions``' ``clipped_zoom`` along one axis of length ``n``.

    The centre ``ceil(n / zoom)`` pixels are zoomed with ``scipy.ndimage.zoom(order=1)``, whose
    output has ``round(crop * zoom)`` pixels (possibly more than n) on a grid aligning the
    corner pixels. With ``trim`` the first ``n`` are kept, giving an (n, n) matrix; without,
    all of them ((round(crop * zoom), n)).
    """
    crop = int(math.ceil(n / zoom))
    top = (n - crop) // 2
    out = int(round(crop * zoom))
    step = (crop - 1) / (out - 1) if out > 1 else 0.0
    coords = np.arange(min(out, n) if trim else out) * step
    return _linear_interp_matrix(coords, crop, top, n)


@lru_cache(maxsize=256)
def pil_box_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's ``Image.BOX`` resampling along one axis.

    Replicates Pillow's ``precompute_coeffs``: support 0.5 scaled by the reduction factor,
    box filter ``-0.5 < t <= 0.5`` sampled at input pixel centres, rows normalised.
    """
    scale = n_in / n_out
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    matrix = np.zeros((n_out, n_in))
    for xx in range(n_out):
        center = (xx + 0.5) * scale
        x_min = max(int(center - support + 0.5), 0)
        x_max = min(int(center + support + 0.5), n_in)
        t = (np.arange(x_min, x_max) - center + 0.5) / filter_scale
        weights = ((t > -0.5) & (t <= 0.5)).astype(np.float64)
        if weights.sum() > 0:
            matrix[xx, x_min:x_max] = weights / weights.sum()
    return matrix


def apply_separable_matrices(x: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> torch.Tensor:
    """``rows @ x @ cols.T`` on the last two axes of x (a separable linear resampling)."""
    r = torch.as_tensor(rows, dtype=x.dtype, device=x.device)
    c = torch.as_tensor(cols, dtype=x.dtype, device=x.device)
    # Two right-multiplications, each one large matrix product over the whole batch (a left
    # multiplication would broadcast into many small ones).
    return ((x @ c.T).transpose(-1, -2) @ r.T).transpose(-1, -2)


# --------------------------------------------------------------------------- motion blur


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """Batched ``imagecorruptions`` ``_motion_blur``: one blur direction per image.

    The reference sums ``2 * radius + 1`` copies of the image shifted by whole pixels along the
    direction (edge pixels repeated), weighted by a half Gaussian; it stops once a shift leaves
    the image. ``angles_deg`` has shape (N,).
    """
    taps = _motion_blur_taps(radius, sigma, angles_deg, *x.shape[-2:])
    directions, members = torch.unique(angles_deg.detach().cpu(), return_inverse=True)
    if len(directions) * _IMAGES_PER_DIRECTION <= len(x):
        return _blur_by_direction(x, taps, members)
    return _blur_by_gather(x, taps)


# Below this many images per distinct direction, one gather per tap beats shifted windows.
_IMAGES_PER_DIRECTION = 16


class _BlurTaps(NamedTuple):
    """Each tap's whole-pixel shift in y and x and its weight, all (taps, N)."""

    shift_y: torch.Tensor
    shift_x: torch.Tensor
    weights: torch.Tensor

    @property
    def pad(self) -> int:
        """Replicate padding by this much puts every shifted copy inside the padded image."""
        return int(max(self.shift_y.abs().max(), self.shift_x.abs().max()))


def _motion_blur_taps(radius: int, sigma: float, angles_deg: torch.Tensor, h: int, w: int) -> _BlurTaps:
    """The half-Gaussian taps along each direction, weight 0 from the first shift that leaves
    the image; taps too light to matter are dropped."""
    width = 2 * radius + 1
    taps = np.exp(-(np.arange(width, dtype=np.float64) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    # Taps weighing under 1e-8 cannot move a float32 result in [0, 1] by more than an ulp.
    used = int(np.flatnonzero(taps >= 1e-8).max()) + 1
    # Shifts in float64 on the CPU, as in the reference, so rounding ties fall the same way.
    theta = torch.deg2rad(angles_deg.detach().to("cpu", torch.float64))
    point_y, point_x = width * torch.sin(theta), width * torch.cos(theta)
    hypot = torch.hypot(point_y, point_x)
    steps = torch.arange(used, dtype=torch.float64)[:, None]
    shift_y = -torch.ceil(steps * point_y / hypot - 0.5).long()
    shift_x = -torch.ceil(steps * point_x / hypot - 0.5).long()
    inside = (shift_y.abs() < h) & (shift_x.abs() < w)
    inside = torch.cummin(inside.int(), dim=0).values.bool()  # the reference loop breaks
    return _BlurTaps(shift_y, shift_x, torch.as_tensor(taps[:used])[:, None] * inside)


def _blur_by_gather(x: torch.Tensor, taps: _BlurTaps) -> torch.Tensor:
    """Any mix of directions: each shifted copy is a plain offset into the flattened padded
    image, so one gather per tap reads that tap's copies of all images."""
    n, c, h, w = x.shape
    pad = taps.pad
    flat = F.pad(x, (pad, pad, pad, pad), mode="replicate").reshape(n, c, -1)
    padded_w = w + 2 * pad
    base = ((torch.arange(h, device=x.device)[:, None] + pad) * padded_w + torch.arange(w, device=x.device) + pad)
    offsets = (-(taps.shift_y * padded_w + taps.shift_x)).to(x.device)
    weights = taps.weights.to(x.device, x.dtype)
    out = torch.zeros(n, c, h * w, dtype=x.dtype, device=x.device)
    for i in range(len(weights)):
        index = (offsets[i][:, None] + base.reshape(-1)).reshape(n, 1, -1).expand(n, c, -1)
        out.addcmul_(flat.gather(2, index), weights[i].reshape(n, 1, 1))
    return out.reshape(n, c, h, w)


def _blur_by_direction(x: torch.Tensor, taps: _BlurTaps, members: torch.Tensor) -> torch.Tensor:
    """Many images per direction (CIFAR-10-P's frames): each direction's images at once, the
    same weighted sum as :func:`_blur_by_gather` over plain slices of the padded images."""
    h, w = x.shape[-2:]
    pad = taps.pad
    weights = taps.weights.to(x.device, x.dtype)
    out = torch.empty_like(x)
    for direction in range(int(members.max()) + 1):
        images = (members == direction).nonzero()[:, 0]
        first = int(images[0])
        images = images.to(x.device)
        group = F.pad(x.index_select(0, images), (pad, pad, pad, pad), mode="replicate")
        blurred = torch.zeros_like(out[: len(images)])
        for i in range(len(weights)):
            top, left = pad - int(taps.shift_y[i, first]), pad - int(taps.shift_x[i, first])
            blurred.addcmul_(group[..., top : top + h, left : left + w], weights[i, first])
        out.index_copy_(0, images, blurred)
    return out


# --------------------------------------------------------------------------- colour


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV ``COLOR_RGB2GRAY`` luma (0.299, 0.587, 0.114); (N, 3, H, W) -> (N, 1, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights[None, :, None, None]).sum(1, keepdim=True)
