"""Blur corruptions: defocus, Gaussian, glass, motion, zoom."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse
import torch

from . import _ops
from .params import DefocusBlurParams, GlassBlurParams, MotionBlurParams


@lru_cache(maxsize=64)
def defocus_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """``imagecorruptions.disk``: a normalised disk on a 17x17 grid (wider for radius > 8),
    anti-aliased by ``cv2.GaussianBlur`` (3x3, or 5x5 for radius > 8; reflect-101 border),
    then cropped to its non-zero support."""
    if radius <= 8:
        offsets, ksize = np.arange(-8, 8 + 1), 3
    else:
        offsets, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(offsets, offsets)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-((np.arange(ksize) - (ksize - 1) / 2) ** 2) / (2 * alias_blur**2))
    taps /= taps.sum()
    half = ksize // 2
    padded = np.pad(disk, half, mode="reflect")  # NumPy 'reflect' is OpenCV's reflect-101
    blurred = sum(taps[i] * padded[i : i + disk.shape[0], half:-half] for i in range(ksize))
    padded = np.pad(blurred, ((0, 0), (half, half)), mode="reflect")
    blurred = sum(taps[i] * padded[:, i : i + disk.shape[1]] for i in range(ksize))
    # Crop symmetrically to the rows/columns that carry weight, keeping the centre in place.
    support = np.nonzero(blurred.max(axis=0) > 0)[0]
    centre = disk.shape[0] // 2
    reach = int(max(centre - support.min(), support.max() - centre))
    return blurred[centre - reach : centre + reach + 1, centre - reach : centre + reach + 1]


@lru_cache(maxsize=64)
def _separable_components(radius: float, alias_blur: float) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The defocus kernel as a sum of outer products (column filter, row filter), from its
    SVD; components below 1e-9 of the largest are dropped. The CIFAR kernels have rank 1 or 2."""
    u, singular, vt = np.linalg.svd(defocus_kernel(radius, alias_blur))
    keep = np.flatnonzero(singular > 1e-9 * singular[0])
    return tuple((u[:, r] * singular[r], vt[r]) for r in keep)


def defocus_blur(x: torch.Tensor, params: DefocusBlurParams, generator: torch.Generator) -> torch.Tensor:
    """Correlate each channel with the anti-aliased disk (``cv2.filter2D``, reflect-101), as a
    sum of separable filters."""
    components = _separable_components(params.radius, params.alias_blur)
    out = torch.zeros_like(x)
    for column, row in components:
        out += _ops.separable_filter(x, column, row, "reflect101")
    return out


def gaussian_blur(x: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """``skimage.filters.gaussian`` per channel (edge pixels repeated, truncated at 4 sigma)."""
    return _ops.gaussian_filter(x, sigma)


@lru_cache(maxsize=16)
def _glass_positions(h: int, w: int, max_delta: int) -> np.ndarray:
    """Flat indices of the pixels the reference visits, in its order: rows ``H-d .. d+1``
    descending and, within a row, columns ``W-d .. d+1`` descending."""
    d = max_delta
    rows = np.arange(h - d, d, -1)
    cols = np.arange(w - d, d, -1)
    return (rows[:, None] * w + cols[None, :]).reshape(-1)


def glass_shuffle(x: torch.Tensor, max_delta: int, offsets: torch.Tensor) -> torch.Tensor:
    """One pass of the reference's local pixel "swap" with given offsets, batched.

    The reference writes ``x[h, w], x[h2, w2] = x[h2, w2], x[h, w]`` on NumPy views, which
    copies instead of swapping: each visited pixel takes the value at (h + dy, w + dx) as it is
    at that moment. That value is the original one unless the neighbour was itself visited
    earlier, in which case it is what the neighbour took; following those links to their end
    (pointer jumping, log2(P) rounds of gathers) gives every pixel's final source at once.
    With max_delta = 1 (all CIFAR severities) neighbours are always visited later, so one
    gather suffices.

    ``offsets`` (N, P, 2) holds (dy, dx) in [-d, d-1] for the P visited positions in order.
    """
    n, c, h, w = x.shape
    device = x.device
    targets = torch.as_tensor(_glass_positions(h, w, max_delta), device=device)  # (P,)
    n_positions = targets.numel()
    sources = targets + offsets[..., 0] * w + offsets[..., 1]  # (N, P)
    visit_step = torch.full((h * w,), n_positions, device=device, dtype=torch.long)
    visit_step[targets] = torch.arange(n_positions, device=device)
    step = torch.arange(n_positions, device=device)
    source_step = visit_step[sources]
    link = torch.where(source_step < step, source_step, step)  # earlier write to read from
    while True:
        jumped = link.gather(1, link)
        if torch.equal(jumped, link):
            break
        link = jumped
    final_sources = sources.gather(1, link)
    flat = x.reshape(n, c, h * w)
    out = flat.clone()
    out[:, :, targets] = flat.gather(2, final_sources[:, None, :].expand(n, c, -1))
    return out.reshape(n, c, h, w)


def glass_blur(x: torch.Tensor, params: GlassBlurParams, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur, truncation to 8 bits, local pixel shuffles (see :func:`glass_shuffle`),
    Gaussian blur."""
    n, _, h, w = x.shape
    d = params.max_delta
    if h <= 2 * d + 1 or w <= 2 * d + 1:
        raise ValueError(f"glass_blur needs images larger than {2 * d + 1} pixels, got {tuple(x.shape)}")
    y = _ops.gaussian_filter(x, params.sigma)
    y = torch.floor(y * 255.0) / 255.0  # the reference stores the blurred image as uint8
    n_positions = (h - 2 * d) * (w - 2 * d)
    for _ in range(params.iterations):
        offsets = torch.randint(-d, d, (n, n_positions, 2), generator=generator, device=generator.device).to(
            x.device
        )
        y = glass_shuffle(y, d, offsets)
    return _ops.gaussian_filter(y, params.sigma)


def motion_blur(x: torch.Tensor, params: MotionBlurParams, generator: torch.Generator) -> torch.Tensor:
    """Motion blur along a direction drawn uniformly in [-45, 45] degrees per image."""
    angles = _ops.uniform((x.shape[0],), -45.0, 45.0, generator, x)
    return _ops.motion_blur(x, params.radius, params.sigma, angles)


def zoom_factors(max_zoom: float) -> np.ndarray:
    """Zoom factors 1, 1.01, ..., max_zoom."""
    return 1.0 + 0.01 * np.arange(int(round((max_zoom - 1.0) / 0.01)) + 1)


@lru_cache(maxsize=32)
def _zoom_blur_operator(
    h: int, w: int, max_zoom: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """Sparse (H*W, H*W) matrix of the whole zoom blur: the mean of the identity and the
    ``clipped_zoom`` by each factor (each a Kronecker product of the per-axis matrices). Every
    output pixel reads only about a dozen input pixels."""
    factors = zoom_factors(max_zoom)
    total = scipy.sparse.identity(h * w, format="csr")
    for factor in factors:
        rows = scipy.sparse.csr_matrix(_ops.clipped_zoom_matrix(h, float(factor)))
        cols = scipy.sparse.csr_matrix(_ops.clipped_zoom_matrix(w, float(factor)))
        total = total + scipy.sparse.kron(rows, cols, format="csr")
    total = (total / (len(factors) + 1)).tocoo()
    indices = torch.as_tensor(np.vstack([total.row, total.col]), dtype=torch.long)
    operator = torch.sparse_coo_tensor(
        indices, torch.as_tensor(total.data), total.shape, dtype=dtype, check_invariants=True
    )
    return operator.coalesce().to(device)


def zoom_blur(x: torch.Tensor, max_zoom: float, generator: torch.Generator) -> torch.Tensor:
    """Average of the image and its centre zooms by each factor (``clipped_zoom``), applied to
    the whole batch as one sparse matrix product."""
    n, c, h, w = x.shape
    operator = _zoom_blur_operator(h, w, float(max_zoom), x.device, x.dtype)
    planes = x.reshape(n * c, h * w).T.contiguous()
    return torch.sparse.mm(operator, planes).T.reshape(n, c, h, w)
