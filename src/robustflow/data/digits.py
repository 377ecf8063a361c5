"""scikit-learn's bundled 8x8 digits as a small RGB image dataset (no download needed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustflow.data import ImageSplits, stratified_split

DIGITS_MAX_VALUE = 16  # sklearn's digits hold counts 0..16 per 8x8 cell


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as (N, 8, 8) float counts 0..16 and int labels, exactly what
    ``sklearn.datasets.load_digits`` returns, read from the CSV scikit-learn ships: importing
    scikit-learn would cost every job about a second."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the embedded default's digits ship with scikit-learn: pip install scikit-learn")
    data = np.loadtxt(Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def load_digits(
    split_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_size: int = 32,
) -> ImageSplits:
    """All 1797 digits as ``image_size``-square RGB uint8 images in a seeded stratified split.

    Each 8x8 image is scaled to [0, 1], upsampled bilinearly, scaled to 0..255 and
    replicated over three channels, so RGB models run on it unchanged.
    """
    if image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size}")
    digits, target = digits_arrays()
    small = torch.as_tensor(digits, dtype=torch.float32).unsqueeze(1) / DIGITS_MAX_VALUE
    large = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (large * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(target, dtype=torch.int64)

    train, val, test = (
        torch.from_numpy(part) for part in stratified_split(target, (val_fraction, test_fraction), split_seed)
    )
    classes = [str(name) for name in range(10)]
    return ImageSplits.from_indices(images, labels, train, val, images[test], labels[test], classes)
