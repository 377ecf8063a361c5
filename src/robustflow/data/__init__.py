"""Image datasets held as uint8 NCHW tensors, loaded by name from one registry.

Every loader returns an `ImageSplits`: fixed, seeded, stratified train/val/test splits plus
the per-channel mean/std of the train split, so training code never touches files again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "DatasetIntegrityError",
    "DatasetNotFoundError",
    "ImageSplits",
    "channel_stats",
    "cifar10_missing_files",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "stratified_split",
]


@dataclass(frozen=True)
class ImageSplits:
    """Train/val/test images (uint8, N,C,H,W, square) and int64 labels.

    ``classes[k]`` names label ``k``; ``mean``/``std`` are per-channel statistics of the
    train split on the [0, 1] scale (what `robustflow.data.augment.normalize` expects).
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        shape = None
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            if x.dtype != torch.uint8 or x.ndim != 4:
                raise ValueError(
                    f"{split}_x must be a uint8 tensor of shape (N, C, H, W), "
                    f"got {x.dtype} with shape {tuple(x.shape)}"
                )
            if x.shape[2] != x.shape[3]:
                raise ValueError(f"{split}_x must hold square images, got H x W = {x.shape[2]} x {x.shape[3]}")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(f"{split}_x has image shape {tuple(x.shape[1:])}, train_x has {tuple(shape)}")
            shape = x.shape[1:]
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(
                    f"{split}_y must be an int64 tensor of shape ({x.shape[0]},), "
                    f"got {y.dtype} with shape {tuple(y.shape)}"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise ValueError(f"{split}_y has labels outside 0..{len(self.classes) - 1}")
        channels = self.train_x.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise ValueError(
                f"mean and std need one value per channel ({channels}), got {len(self.mean)} and {len(self.std)}"
            )

    @classmethod
    def from_indices(cls, images: torch.Tensor, labels: torch.Tensor, train_idx, val_idx,
                     test_x: torch.Tensor, test_y: torch.Tensor, classes: Sequence[str]) -> ImageSplits:
        """Train and val splits of ``images``/``labels`` at the given indices, plus a test set;
        the normalisation statistics come from the train split only."""
        train_x = images[train_idx]
        mean, std = channel_stats(train_x)
        return cls(train_x=train_x, train_y=labels[train_idx], val_x=images[val_idx], val_y=labels[val_idx],
                   test_x=test_x, test_y=test_y, classes=tuple(classes), mean=mean, std=std)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Side length of the (square) images."""
        return int(self.train_x.shape[-1])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 NCHW images on the [0, 1] scale.

    Uses a 256-bin histogram per channel: exact, and no float copy of the whole set.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for channel in range(images.shape[1]):
        counts = torch.bincount(images[:, channel].reshape(-1).cpu(), minlength=256).double()
        total = counts.sum()
        mean = (counts * levels).sum() / total
        var = (counts * (levels - mean) ** 2).sum() / total
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def stratified_split(
    labels: Sequence[int] | np.ndarray, fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Split ``range(len(labels))`` into ``len(fractions) + 1`` disjoint, class-stratified parts.

    ``fractions`` are the sizes of the trailing parts (e.g. ``(val, test)``); the first part
    gets the rest. A part of fraction f holds ceil(f x N) images (scikit-learn's
    ``train_test_split`` sizes), shared among the classes in proportion to the images each has
    left (largest remainders), each class's images taken in a seeded random order; the last
    part is drawn first. Each part's indices are sorted, so a split keeps the source order.
    NumPy only: scikit-learn's splitter would cost every job about a second of imports.
    """
    labels = np.asarray(labels)
    if any(not 0 < f < 1 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(f"split fractions must each lie in (0, 1) and sum to less than 1, got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    classes, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if not len(counts) or counts.min() < len(fractions) + 1:
        scarce = ", ".join(f"{c} ({n})" for c, n in zip(classes, counts) if n < len(fractions) + 1) or "no labels"
        raise ValueError(f"a stratified split into {len(fractions) + 1} parts needs at least that many images of "
                         f"every class; too few of: {scarce}")
    members = [rng.permutation(np.flatnonzero(codes == k)) for k in range(len(classes))]
    left = np.array([len(m) for m in members])
    parts = []
    for fraction in reversed(fractions):
        size = math.ceil(fraction * len(labels))
        if size < len(classes) or left.sum() - size < len(classes):
            raise ValueError(f"a split part of {size} of {len(labels)} images, with {left.sum() - size} left, "
                             f"cannot hold each of the {len(classes)} classes; change the split fractions")
        counts = _proportional_counts(size, left)
        parts.append(np.sort(np.concatenate([m[n - c:n] for m, n, c in zip(members, left, counts)])))
        left = left - counts
    return [np.sort(np.concatenate([m[:n] for m, n in zip(members, left)])), *reversed(parts)]


def _proportional_counts(total: int, sizes: np.ndarray) -> np.ndarray:
    """``total`` shared among groups of ``sizes`` in proportion to them: floors of the exact
    shares, then one more for the largest remainders (the earlier group on a tie)."""
    exact = total * sizes / sizes.sum()
    counts = np.floor(exact).astype(int)
    extra = np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]
    counts[extra] += 1
    return np.minimum(counts, sizes)


# The loaders import ImageSplits and the helpers above from this package, so they come after.
from robustflow.data.cifar10 import (  # noqa: E402
    DatasetIntegrityError,
    DatasetNotFoundError,
    cifar10_missing_files,
    load_cifar10,
)
from robustflow.data.digits import load_digits  # noqa: E402

DATASETS: dict[str, Callable[..., ImageSplits]] = {
    "cifar10": load_cifar10,
    "digits": load_digits,
}


def load_dataset(name: str, **options) -> ImageSplits:
    """Load a registered dataset by name; ``options`` go to its loader."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**options)
