"""scikit-learn's bundled 8x8 digits as a small RGB image dataset (no download needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robustflow.data import ImageSplits, stratified_split

DIGITS_MAX_VALUE = 16  # sklearn's digits hold counts 0..16 per 8x8 cell


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
    from sklearn.datasets import load_digits as sklearn_load_digits  # here: sklearn costs ~1 s to import

    bunch = sklearn_load_digits()
    small = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / DIGITS_MAX_VALUE
    large = F.interpolate(small, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images = (large * 255).round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)

    train, val, test = (
        torch.from_numpy(part) for part in stratified_split(bunch.target, (val_fraction, test_fraction), split_seed)
    )
    classes = [str(name) for name in bunch.target_names]
    return ImageSplits.from_indices(images, labels, train, val, images[test], labels[test], classes)
