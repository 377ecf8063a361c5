"""Batched geometric warps reproducing the resamplers ``make_cifar_p.py`` calls.

- ``torchvision.transforms.functional.affine`` on a PIL image (rotate, shear, scale, zoom blur):
  torchvision of 2018-19 (the script passes ``resample=``, a keyword of those versions) builds
  the inverse matrix about the centre (w/2 + 0.5, h/2 + 0.5), with one shear angle, and calls
  Pillow's ``Image.transform(AFFINE, BILINEAR)``. Pillow samples output pixel (x, y) at
  ``A (x + 0.5, y + 0.5) + b`` in continuous coordinates (pixel i spans [i, i + 1)); a sample
  point outside [0, W) x [0, H) gets the fill 0, one inside interpolates its four neighbours
  (edge pixels repeated), and the result is truncated to 8 bits.
- ``cv2.warpPerspective(x, M, (w, h))`` (tilt): output pixel (x, y) samples the source at
  ``M^-1 (x, y, 1)`` (pixel centres at integers), rounded to 1/32 pixel; bilinear, with pixels
  outside the image reading 0 (BORDER_CONSTANT); weights are multiples of 1/1024, so the
  float result is exact, and OpenCV rounds it to nearest.

Source coordinates are computed once per frame in float64 (shared by all images) and every
image of the batch is read with one ``grid_sample`` call.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

# torchvision < 0.8 turns PIL images about (w/2 + 0.5, h/2 + 0.5); later versions use (w/2, h/2).
TORCHVISION_CENTRE_OFFSET = 0.5
OPENCV_SUBPIXEL_STEPS = 32  # INTER_TAB_SIZE: warp coordinates are rounded to 1/32 pixel


def torchvision_affine(angle: float, scale: float, shear: float) -> np.ndarray:
    """Forward 2x2 matrix of torchvision's ``affine`` (one shear angle, as in torchvision
    0.2-0.4): ``[[cos a, -sin(a + s)], [sin a, cos(a + s)]] * scale``, angles in degrees
    (clockwise on screen, y pointing down)."""
    a, s = math.radians(angle), math.radians(shear)
    return scale * np.array([[math.cos(a), -math.sin(a + s)], [math.sin(a), math.cos(a + s)]])


def tilt_matrix(h: int, w: int, angle: float) -> np.ndarray:
    """``make_cifar_p.py``'s tilt homography for both tilt angles = ``angle`` degrees.

    The image plane sits at depth 1 and is moved by f = sqrt(w^2 + h^2), so even at angle 0
    the map shrinks the image by f / (f + 1) about (w/2, h/2): the reference's middle frame
    is not the clean image.
    """
    phi = theta = np.deg2rad(angle)
    f = np.sqrt(w**2 + h**2)
    to_plane = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1], [0, 0, 1]])
    rotate_x = np.array(
        [
            [1, 0, 0, 0],
            [0, np.cos(theta), -np.sin(theta), 0],
            [0, np.sin(theta), np.cos(theta), 0],
            [0, 0, 0, 1],
        ]
    )
    rotate_y = np.array(
        [[np.cos(phi), 0, -np.sin(phi), 0], [0, 1, 0, 0], [np.sin(phi), 0, np.cos(phi), 0], [0, 0, 0, 1]]
    )
    move_away = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, f], [0, 0, 0, 1]])
    project = np.array([[f, 0, w / 2, 0], [0, f, h / 2, 0], [0, 0, 1, 0]])
    return project @ move_away @ rotate_x @ rotate_y @ to_plane


def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(H, W, 2) integer pixel positions (x, y)."""
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([xs, ys], axis=-1)


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared by every caller."""
    array.setflags(write=False)
    return array


@lru_cache(maxsize=64)
def pil_affine_source(h: int, w: int, forward: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """(T, H, W, 2) Pillow sample points (continuous x, y) of torchvision's ``affine`` for the
    forward matrices ``forward`` (T rows of the 4 entries of a 2x2 matrix, row-major)."""
    centre = np.array([w * 0.5, h * 0.5]) + TORCHVISION_CENTRE_OFFSET
    inverse = np.linalg.inv(np.asarray(forward, dtype=np.float64).reshape(-1, 2, 2))
    relative = _pixel_grid(h, w) + 0.5 - centre
    return _read_only(np.einsum("tij,hwj->thwi", inverse, relative) + centre)


@lru_cache(maxsize=16)
def opencv_perspective_source(h: int, w: int, matrices: tuple[tuple[float, ...], ...]) -> np.ndarray:
    """(T, H, W, 2) source pixel positions (x, y) of ``cv2.warpPerspective`` for the forward
    homographies ``matrices`` (T rows of 9 entries), rounded to 1/32 pixel as OpenCV does."""
    inverse = np.linalg.inv(np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3))
    pixels = np.concatenate([_pixel_grid(h, w), np.ones((h, w, 1))], axis=-1)
    projected = np.einsum("tij,hwj->thwi", inverse, pixels)
    source = projected[..., :2] / projected[..., 2:]
    return _read_only(np.rint(source * OPENCV_SUBPIXEL_STEPS) / OPENCV_SUBPIXEL_STEPS)


def _sample(images: torch.Tensor, grid: np.ndarray, padding_mode: str) -> torch.Tensor:
    """Bilinear samples of float (N, C, H', W') at ``grid`` (T, H, W, 2; grid_sample's
    normalised coordinates, align_corners=False): a (N, T, C, H, W) view."""
    n, c = images.shape[:2]
    t, h, w = grid.shape[:3]
    points = torch.as_tensor(grid, dtype=images.dtype, device=images.device).reshape(1, t * h, w, 2)
    sampled = F.grid_sample(
        images, points.expand(n, -1, -1, -1), mode="bilinear", padding_mode=padding_mode, align_corners=False
    )
    return sampled.reshape(n, c, t, h, w).transpose(1, 2)


def pil_bilinear(images: torch.Tensor, source: np.ndarray) -> torch.Tensor:
    """Pillow's bilinear ``transform`` of float (N, C, H, W) images at the continuous sample
    points ``source`` (T, H, W, 2), before its truncation to 8 bits: (N, T, C, H, W)."""
    h, w = images.shape[-2:]
    # One replicated pixel around the image gives Pillow's clamped neighbours; sample points
    # outside the image are moved beyond that border, where zero padding reads the fill 0.
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    inside = ((source >= 0) & (source < np.array([w, h]))).all(axis=-1, keepdims=True)
    points = np.where(inside, source + 1.0, -2.0)
    return _sample(padded, 2.0 * points / np.array([w + 2, h + 2], dtype=np.float64) - 1.0, "zeros")


def opencv_bilinear(images: torch.Tensor, source: np.ndarray) -> torch.Tensor:
    """OpenCV's bilinear remap of float (N, C, H, W) images at pixel positions ``source``
    (T, H, W, 2) with a constant 0 border, before its rounding: (N, T, C, H, W)."""
    h, w = images.shape[-2:]
    size = np.array([w, h], dtype=np.float64)
    return _sample(images, (2.0 * source + 1.0) / size - 1.0, "zeros")
