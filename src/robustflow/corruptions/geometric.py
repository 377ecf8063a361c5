"""Elastic transform: random affine warp followed by a smooth random displacement field."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._ops import gaussian_filter, uniform
from .params import ElasticParams


def elastic_from_draws(
    x: torch.Tensor,
    params: ElasticParams,
    affine_jitter: torch.Tensor,
    noise_dx: torch.Tensor,
    noise_dy: torch.Tensor,
) -> torch.Tensor:
    """The CIFAR-10-C elastic transform given its random draws.

    ``affine_jitter`` (N, 3, 2) moves the three control points (x, y) of ``cv2.getAffineTransform``
    (in pixels, already scaled); the image is warped like ``cv2.warpAffine`` (bilinear,
    reflect-101 border). ``noise_dx``/``noise_dy`` (N, H, W) are uniform in [-1, 1]; smoothed
    by a Gaussian (``sigma * size``, truncated at 3 sigma, mirrored border) and scaled by
    ``alpha * size`` they displace the sampling grid, read like ``scipy.ndimage.map_coordinates``
    (order 1, mode 'reflect').
    """
    n, _, h, w = x.shape
    size = min(h, w)
    dtype, device = x.dtype, x.device
    # Control points around the centre, as in the reference (x, y order).
    cx, cy, half = float(w // 2), float(h // 2), float(size // 3)
    src = torch.tensor(
        [[cx + half, cy + half], [cx + half, cy - half], [cx - half, cy - half]], dtype=dtype, device=device
    )
    dst = src + affine_jitter.to(dtype)
    # warpAffine samples the source at the inverse map, i.e. the affine map taking dst to src.
    ones = torch.ones(n, 3, 1, dtype=dtype, device=device)
    coef = torch.linalg.solve(torch.cat([dst, ones], dim=2), src.expand(n, 3, 2))  # (N, 3, 2)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=dtype, device=device),
        torch.arange(w, dtype=dtype, device=device),
        indexing="ij",
    )
    pixels = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, h * w, 3)
    source = (pixels @ coef).reshape(n, h, w, 2)
    # align_corners=True: -1/1 are the outer pixel centres, and reflection about them is
    # OpenCV's reflect-101.
    scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=dtype, device=device)
    warped = F.grid_sample(
        x, source * scale - 1.0, mode="bilinear", padding_mode="reflection", align_corners=True
    )

    alpha, sigma = params.alpha * size, params.sigma * size
    dx = gaussian_filter(noise_dx[:, None].to(dtype), sigma, mode="reflect", truncate=3.0)[:, 0] * alpha
    dy = gaussian_filter(noise_dy[:, None].to(dtype), sigma, mode="reflect", truncate=3.0)[:, 0] * alpha
    # align_corners=False: -1/1 are the outer pixel edges, and reflection about them is
    # SciPy's 'reflect' (edge pixel repeated).
    grid = torch.stack([(2.0 * (xs + dx) + 1.0) / w - 1.0, (2.0 * (ys + dy) + 1.0) / h - 1.0], dim=-1)
    return F.grid_sample(warped, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def elastic_transform(x: torch.Tensor, params: ElasticParams, generator: torch.Generator) -> torch.Tensor:
    """Random affine jitter of ``affine_jitter * size`` pixels plus elastic displacement."""
    n, _, h, w = x.shape
    jitter = params.affine_jitter * min(h, w)
    affine_jitter = uniform((n, 3, 2), -jitter, jitter, generator, x)
    noise_dx = uniform((n, h, w), -1.0, 1.0, generator, x)
    noise_dy = uniform((n, h, w), -1.0, 1.0, generator, x)
    return elastic_from_draws(x, params, affine_jitter, noise_dx, noise_dy)
