"""Two views of every image, for the one-pixel protocols of Azulay & Weiss and Zhang's consistency.

Azulay & Weiss, "Why do deep convolutional networks generalize so poorly to small image
transformations?" (JMLR 2019), compare a network's output on two views that differ by one pixel:

- crop-shift: two square crops of the image, the second one pixel further down and right;
- embed-translate: the image on a larger black canvas, the second copy one pixel further down
  and right;
- embed-scale: the image on a larger black canvas, the second copy enlarged by one pixel in
  height and width (same top-left corner). The paper shrinks a large photograph to 100 and 101
  pixels; from a 32-pixel image only the second copy can be resampled (bilinear), so the views
  also differ by that interpolation. (The paper's fourth protocol, embedding with inpainting,
  is not provided.)

Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019), measures consistency
on two random shifts of the same image (ImageNet: two 224 crops of a 256 image); for CIFAR-sized
images, see :func:`random_shift_pair`.

Every function takes uint8 (N, C, H, W) and returns uint8 views on the images' device. Where a
``generator`` is given, each image gets its own random position; without one, views are centred.
The metrics are ``shift_consistency``, ``consistency_by_distance``, ``top1_change_probability``
and ``top_class_probability_change`` in ``robustflow.repeatability_metrics``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

PADDING_MODES = ("zeros", "reflect")


class ShiftPair(NamedTuple):
    first: torch.Tensor  # uint8 (N, C, H, W)
    second: torch.Tensor  # uint8 (N, C, H, W)
    displacement: torch.Tensor  # int64 (N, 2): (down, right) of the second view's content minus the first's


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be a uint8 tensor of shape (N, C, H, W), got "
            f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
        )


def _positions(n: int, room: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """(N,) offsets in 0..room: uniform per image with a generator, else the middle one."""
    if generator is None:
        return torch.full((n,), room // 2, dtype=torch.long, device=device)
    return torch.randint(0, room + 1, (n,), generator=generator, device=generator.device).to(device)


def _crop(images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The (h, w) window at per-image corners ``top``/``left`` (N,), one gather for the batch."""
    n = images.shape[0]
    rows = top[:, None] + torch.arange(h, device=images.device)
    cols = left[:, None] + torch.arange(w, device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    # advanced indices around a slice put their dimensions first: (N, h, w, C)
    return images[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _embed(images: torch.Tensor, canvas: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Each image on a black (canvas, canvas) square, its corner at ``top``/``left`` (N,)."""
    n, c, h, w = images.shape
    out = torch.zeros(n, c, canvas, canvas, dtype=images.dtype, device=images.device)
    rows = top[:, None] + torch.arange(h, device=images.device)
    cols = left[:, None] + torch.arange(w, device=images.device)
    batch = torch.arange(n, device=images.device)[:, None, None]
    out[batch, :, rows[:, :, None], cols[:, None, :]] = images.permute(0, 2, 3, 1)
    return out


def crop_shift_pair(
    images: torch.Tensor, crop_size: int | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``crop_size`` square crops one pixel apart diagonally (default size: the smaller
    image side minus 1, the largest that allows the shift)."""
    _check_images(images)
    n, _, h, w = images.shape
    size = min(h, w) - 1 if crop_size is None else crop_size
    if not 1 <= size <= min(h, w) - 1:
        raise ValueError(f"crop_size must be in 1..{min(h, w) - 1} for {h}x{w} images, got {crop_size}")
    top = _positions(n, h - size - 1, generator, images.device)
    left = _positions(n, w - size - 1, generator, images.device)
    return _crop(images, top, left, size, size), _crop(images, top + 1, left + 1, size, size)


def _canvas_and_corners(
    images: torch.Tensor, canvas_size: int | None, generator: torch.Generator | None
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The canvas side (default: twice the image side) and each image's top-left corner on it,
    leaving room for the second view's extra pixel."""
    n, _, h, w = images.shape
    canvas = 2 * max(h, w) if canvas_size is None else canvas_size
    if canvas < max(h, w) + 1:
        raise ValueError(f"canvas_size must be at least {max(h, w) + 1} for {h}x{w} images, got {canvas}")
    top = _positions(n, canvas - h - 1, generator, images.device)
    left = _positions(n, canvas - w - 1, generator, images.device)
    return canvas, top, left


def embed_translate_pair(
    images: torch.Tensor, canvas_size: int | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image on a black ``canvas_size`` square (default: twice the image side), then the
    same with the image one pixel further down and right."""
    _check_images(images)
    canvas, top, left = _canvas_and_corners(images, canvas_size, generator)
    return _embed(images, canvas, top, left), _embed(images, canvas, top + 1, left + 1)


def embed_scale_pair(
    images: torch.Tensor, canvas_size: int | None = None, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The image on a black ``canvas_size`` square (default: twice the image side), then the
    same with the image resized (bilinear) to one pixel more in height and width, at the same
    top-left corner."""
    _check_images(images)
    h, w = images.shape[-2:]
    canvas, top, left = _canvas_and_corners(images, canvas_size, generator)
    larger = F.interpolate(images.float(), size=(h + 1, w + 1), mode="bilinear", align_corners=False)
    larger = (larger.clamp(0, 255) + 0.5).to(torch.uint8)
    return _embed(images, canvas, top, left), _embed(larger, canvas, top, left)


def random_shift_pair(
    images: torch.Tensor, max_shift: int, generator: torch.Generator, padding_mode: str = "zeros"
) -> ShiftPair:
    """Two views of each image shifted by independent random offsets (dy, dx), each uniform in
    -max_shift..max_shift (Zhang's consistency protocol).

    Each view is the image-sized crop at its offset from the image padded by ``max_shift`` on
    every side, so every crop lies within the padding. ``padding_mode``: "zeros" (black; the
    default, as in the pad-and-crop augmentation CIFAR models are trained with, so the views
    stay in the training distribution) or "reflect" (mirrored about the edge pixel, which is not
    repeated: d c b | a b c d). ``max_shift`` must be smaller than both image sides (a wider
    reflection is undefined, a wider black shift can push the image out of view).
    ``displacement`` is the content shift of the second view relative to the first.
    """
    _check_images(images)
    n, _, h, w = images.shape
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or not 0 <= max_shift < min(h, w):
        raise ValueError(
            f"max_shift must be an integer in 0..{min(h, w) - 1} for {h}x{w} images, got {max_shift!r}"
        )
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if padding_mode == "zeros":
        padded = F.pad(images, (max_shift,) * 4)
    else:  # torch pads integer tensors only with constants
        padded = F.pad(images.float(), (max_shift,) * 4, mode="reflect").to(torch.uint8)
    offsets = torch.randint(
        -max_shift, max_shift + 1, (2, n, 2), generator=generator, device=generator.device
    ).to(images.device)
    views = [_crop(padded, max_shift + view[:, 0], max_shift + view[:, 1], h, w) for view in offsets]
    # a crop taken further down-right shows the content further up-left
    return ShiftPair(views[0], views[1], offsets[0] - offsets[1])
