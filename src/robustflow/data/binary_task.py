"""Binary image tasks for the learning-rule study.

The source's experiment is a linear readout from flattened 64x64 grayscale images (4096 inputs)
to two outputs. Two sources are provided:

- ``digits_binary_task``: scikit-learn's bundled 8x8 digits (no download), upsampled
  bilinearly to ``image_size``; a pair of digits or one digit against several.
- ``image_folder_binary_task``: any folder with exactly two class sub-folders of images, for
  running the readout on the source's own kind of data (e.g. road / not-road crops).

Both split each class separately (stratified) with a seeded permutation, so the test set keeps
the class proportions and the same ``split_seed`` always gives the same split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from robustflow.data.digits import DIGITS_MAX_VALUE, digits_arrays
from robustflow.data_files import IMAGE_SUFFIXES


@dataclass(frozen=True)
class BinaryTask:
    """Train/test images (float32 NCHW, one channel, values in [0, 1]) and labels in {0, 1}.

    ``class_names[k]`` names the class with label ``k``.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, str]

    def __post_init__(self) -> None:
        for name in ("train", "test"):
            x = getattr(self, f"{name}_x")
            y = getattr(self, f"{name}_y")
            if x.ndim != 4 or x.shape[1] != 1:
                raise ValueError(f"{name}_x must have shape (N, 1, H, W), got {tuple(x.shape)}")
            if y.shape != (x.shape[0],):
                raise ValueError(
                    f"{name}_y must have shape ({x.shape[0]},) to match {name}_x, got {tuple(y.shape)}"
                )
            if y.numel() and not bool(((y == 0) | (y == 1)).all()):
                raise ValueError(f"{name}_y must hold labels 0 and 1 only")
        if len(self.class_names) != 2:
            raise ValueError(f"class_names must name exactly two classes, got {self.class_names!r}")

    @property
    def n_inputs(self) -> int:
        """Number of readout inputs: pixels per flattened image (4096 for 64x64)."""
        return int(np.prod(self.train_x.shape[1:]))


def _check_split_arguments(image_size: int, test_fraction: float) -> None:
    if int(image_size) != image_size or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")


def _stratified_split(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split each class with a seeded permutation; every class keeps >= 1 train and test image."""
    train_idx, test_idx = [], []
    for label in (0, 1):
        members = torch.nonzero(y == label).flatten()
        if len(members) < 2:
            raise ValueError(
                f"class {label} has {len(members)} image(s); at least 2 are needed to split train/test"
            )
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = min(max(round(len(members) * test_fraction), 1), len(members) - 1)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    # Shuffle within each split so the classes are interleaved rather than in two blocks.
    train = torch.cat(train_idx)
    train = train[torch.randperm(len(train), generator=generator)]
    test = torch.cat(test_idx)
    test = test[torch.randperm(len(test), generator=generator)]
    return x[train], y[train], x[test], y[test]


def _digit_names(digits: tuple[int, ...]) -> str:
    if len(digits) == 1:
        return f"digit {digits[0]}"
    return "digits " + ",".join(str(d) for d in digits)


def digits_binary_task(
    positive: Sequence[int] = (0,),
    negative: Sequence[int] = (1,),
    image_size: int = 64,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    balance: bool = True,
) -> BinaryTask:
    """Digits ``positive`` (label 1) against digits ``negative`` (label 0) from load_digits.

    The 8x8 images (values 0..16) are divided by 16 and resized bilinearly to
    ``image_size`` x ``image_size``. With ``balance=True`` the larger side is subsampled
    (seeded by ``split_seed``) to the size of the smaller one, which matters for one-vs-rest
    splits such as ``positive=(0,), negative=(1, ..., 9)``.
    """
    positive = tuple(int(d) for d in positive)
    negative = tuple(int(d) for d in negative)
    for name, digits in (("positive", positive), ("negative", negative)):
        if not digits:
            raise ValueError(f"{name} must name at least one digit")
        if any(d < 0 or d > 9 for d in digits):
            raise ValueError(f"{name} digits must lie in 0..9, got {digits}")
    if set(positive) & set(negative):
        raise ValueError(f"positive {positive} and negative {negative} share digits")
    _check_split_arguments(image_size, test_fraction)

    digit_images, digit_labels = digits_arrays()
    images = torch.as_tensor(digit_images, dtype=torch.float32) / DIGITS_MAX_VALUE
    targets = torch.as_tensor(digit_labels, dtype=torch.int64)
    is_positive = torch.isin(targets, torch.tensor(positive))
    is_negative = torch.isin(targets, torch.tensor(negative))

    generator = torch.Generator().manual_seed(int(split_seed))
    positive_idx = torch.nonzero(is_positive).flatten()
    negative_idx = torch.nonzero(is_negative).flatten()
    if balance:
        n_keep = min(len(positive_idx), len(negative_idx))
        positive_idx = positive_idx[torch.randperm(len(positive_idx), generator=generator)[:n_keep]]
        negative_idx = negative_idx[torch.randperm(len(negative_idx), generator=generator)[:n_keep]]
    selected = torch.cat([negative_idx, positive_idx])
    labels = torch.cat(
        [torch.zeros(len(negative_idx), dtype=torch.int64), torch.ones(len(positive_idx), dtype=torch.int64)]
    )

    x = images[selected].unsqueeze(1)
    x = F.interpolate(x, size=(int(image_size), int(image_size)), mode="bilinear", align_corners=False)
    # Bilinear weights are convex, so this only removes float rounding outside [0, 1].
    x = x.clamp(0.0, 1.0).contiguous()

    train_x, train_y, test_x, test_y = _stratified_split(x, labels, test_fraction, generator)
    return BinaryTask(train_x, train_y, test_x, test_y, (_digit_names(negative), _digit_names(positive)))


def image_folder_binary_task(
    root: str | Path,
    image_size: int = 64,
    test_fraction: float = 0.3,
    split_seed: int = 0,
) -> BinaryTask:
    """Two-class task from ``root/<class_a>/*`` and ``root/<class_b>/*`` (.png, .jpg, .jpeg).

    Class folders are sorted by name and get labels 0 and 1. Images are converted to
    grayscale and resized bilinearly to ``image_size`` x ``image_size`` with PIL.
    """
    from PIL import Image

    _check_split_arguments(image_size, test_fraction)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder root {str(root)!r} does not exist or is not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) != 2:
        raise ValueError(
            f"{str(root)!r} must contain exactly two class folders, found {len(class_dirs)}: "
            f"{[p.name for p in class_dirs]}"
        )

    arrays, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {str(class_dir)!r} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        for path in files:
            with Image.open(path) as image:
                gray = image.convert("L").resize((int(image_size), int(image_size)), Image.BILINEAR)
                arrays.append(np.asarray(gray, dtype=np.float32) / 255.0)
        labels.extend([label] * len(files))

    x = torch.from_numpy(np.stack(arrays)).unsqueeze(1)
    y = torch.tensor(labels, dtype=torch.int64)
    generator = torch.Generator().manual_seed(int(split_seed))
    train_x, train_y, test_x, test_y = _stratified_split(x, y, test_fraction, generator)
    return BinaryTask(train_x, train_y, test_x, test_y, (class_dirs[0].name, class_dirs[1].name))
