"""CIFAR-10 from the on-disk format torchvision downloads (``cifar-10-batches-py``).

The pickles are read here directly (one dict per batch, bytes keys); file names and md5
sums come from `torchvision.datasets.CIFAR10` so they are never re-typed. Nothing is
downloaded: a missing file raises `DatasetNotFoundError` saying how to get it.
"""

from __future__ import annotations

import functools
import hashlib
import pickle
from pathlib import Path

import numpy as np
import torch

from robustflow.data import ImageSplits, stratified_split
from robustflow.data_files import cifar10_missing_files

CIFAR10_IMAGE_SHAPE = (3, 32, 32)  # each row: 1024 R, then 1024 G, then 1024 B values, row-major



@functools.cache
def _torchvision_spec():
    """torchvision's CIFAR10 class (file names, md5s, URL); imported on first use because
    torchvision takes seconds to import and most jobs never touch CIFAR-10."""
    from torchvision.datasets import CIFAR10

    return CIFAR10


def _how_to_get(root: Path) -> str:
    spec = _torchvision_spec()
    return (
        f"Download {spec.url} and extract it into {root} (giving {root}/{spec.base_folder}/), "
        "or run `torchvision.datasets.CIFAR10(root, download=True)` on a machine with internet access "
        "and copy the folder over."
    )


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file or folder is not on disk."""


class DatasetIntegrityError(RuntimeError):
    """A dataset file exists but its checksum is not the published one."""


def _expected_files() -> list[tuple[str, str]]:
    """(file name, md5) of every file the loader reads, in reading order."""
    spec = _torchvision_spec()
    return [
        (spec.meta["filename"], spec.meta["md5"]),
        *((name, md5) for name, md5 in spec.train_list),
        *((name, md5) for name, md5 in spec.test_list),
    ]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_pickle(path: Path) -> dict:
    with path.open("rb") as handle:
        return pickle.load(handle, encoding="bytes")


def _read_batches(folder: Path, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        batch = _read_pickle(folder / name)
        images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, *CIFAR10_IMAGE_SHAPE))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load_cifar10(
    root: str | Path,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    verify_md5: bool = True,
) -> ImageSplits:
    """CIFAR-10 with the 50000 training images split (seeded, stratified) into train/val.

    The test split is the official test batch in its original order.
    """
    root = Path(root)
    spec = _torchvision_spec()
    folder = root / spec.base_folder
    how = _how_to_get(root)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"CIFAR-10 folder not found: {folder}. {how}")
    missing = cifar10_missing_files(root)
    if missing:
        raise DatasetNotFoundError(f"CIFAR-10 file(s) not found: {', '.join(map(str, missing))}. {how}")
    if verify_md5:
        corrupt = []
        for name, expected in _expected_files():
            actual = _md5(folder / name)
            if actual != expected:
                corrupt.append(f"{folder / name} (md5 {actual}, expected {expected})")
        if corrupt:
            raise DatasetIntegrityError(
                f"CIFAR-10 file(s) do not match the published md5: {'; '.join(corrupt)}. "
                f"Re-download the dataset. {how}"
            )

    classes = tuple(
        name.decode() for name in _read_pickle(folder / spec.meta["filename"])[spec.meta["key"].encode()]
    )
    images, labels = _read_batches(folder, [name for name, _ in spec.train_list])
    test_x, test_y = _read_batches(folder, [name for name, _ in spec.test_list])
    train, val = (torch.from_numpy(part) for part in stratified_split(labels.numpy(), (val_fraction,), split_seed))
    return ImageSplits.from_indices(images, labels, train, val, test_x, test_y, classes)
