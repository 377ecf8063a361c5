"""CIFAR-10-P on disk: checking, loading and generating the official layout.

Layout (Hendrycks & Dietterich, ICLR 2019; read this way by ``ImageNet-P/cifar-p-eval.py`` in
hendrycks/robustness): ``<root>/<perturbation>.npy`` holds uint8 sequences of shape
(N, T, H, W, 3), sequence i being the T frames of CIFAR-10 test image i (test-set order, N =
10000, 32x32). There is no labels file: the labels are the test set's, and the flip rate needs
none. T is ``robustflow.perturbations.FRAMES[perturbation]`` (31; translate 16, motion_blur 21).

The official files are ``CIFAR-10-P.tar`` in Zenodo record 2535967, the record the
hendrycks/robustness README links for CIFAR-10-C (public download scripts fetch
https://zenodo.org/record/2535967/files/CIFAR-10-P.tar). Public loaders also list
``<noise>_2.npy`` / ``<noise>_3.npy`` files for the harder noise levels; only the names asked
for are read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robustflow.data.cifar10c import check_names
from robustflow.io import atomic_path
from robustflow.perturbations import FRAMES, PERTURBATIONS, perturbation_sequence

HOW_TO_OBTAIN = (
    "Download CIFAR-10-P.tar from Zenodo record 2535967 (https://zenodo.org/records/2535967, the "
    "record that also holds CIFAR-10-C) and extract it so that <root>/<perturbation>.npy exist, or "
    "let the pipeline generate the set (robustflow.data.cifar10p.write_cifar10p)."
)


def _check_names(names: Sequence[str]) -> None:
    check_names(names, PERTURBATIONS, "perturbations")


def _open_sequences(root: Path, name: str) -> np.ndarray:
    """The memory-mapped sequences of ``name``, checked for everything but their number."""
    path = root / f"{name}.npy"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found. {HOW_TO_OBTAIN}")
    try:
        sequences = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: not a readable .npy array ({error}). {HOW_TO_OBTAIN}") from error
    if sequences.dtype != np.uint8:
        raise ValueError(f"{path}: expected dtype uint8, got {sequences.dtype}. {HOW_TO_OBTAIN}")
    if sequences.ndim != 5 or sequences.shape[4] != 3:
        raise ValueError(
            f"{path}: expected shape (N, T, H, W, 3) (one sequence of T frames per test image), "
            f"got {sequences.shape}. {HOW_TO_OBTAIN}"
        )
    if sequences.shape[1] != FRAMES[name]:
        raise ValueError(
            f"{path}: {name} sequences have {FRAMES[name]} frames, got {sequences.shape[1]}. {HOW_TO_OBTAIN}"
        )
    return sequences


def check_cifar10p(root: str | Path, names: Sequence[str], n_images: int) -> None:
    """Check ``<root>/<name>.npy`` for every name: dtype, shape, frame count, and one sequence
    per test image (``n_images``, 10000 for CIFAR-10); raise FileNotFoundError or ValueError
    naming the offending file, what is wrong, and how to obtain the data."""
    _check_names(names)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: CIFAR-10-P directory not found. {HOW_TO_OBTAIN}")
    for name in names:
        count = _open_sequences(root, name).shape[0]
        if count != n_images:
            raise ValueError(
                f"{root / f'{name}.npy'}: has {count} sequences, expected {n_images} (one per test "
                f"image, in test-set order). {HOW_TO_OBTAIN}"
            )


def load_cifar10p(root: str | Path, name: str, n_images: int | None = None) -> torch.Tensor:
    """The sequences of one perturbation as uint8 (N, T, 3, H, W), in test-set order: all of
    them, or those of the first ``n_images`` test images."""
    _check_names([name])
    sequences = _open_sequences(Path(root), name)[:n_images]
    return torch.from_numpy(np.array(sequences.transpose(0, 1, 4, 2, 3), order="C"))


def write_cifar10p(
    root: str | Path,
    images: torch.Tensor,
    names: Sequence[str],
    seed: int,
    batch_size: int = 500,
    device: str | torch.device = "cpu",
) -> None:
    """Generate the CIFAR-10-P layout under ``root`` from the clean test images with
    ``robustflow.perturbations.perturbation_sequence``.

    ``images``: uint8 (N, 3, H, W) in test-set order. Each perturbation gets its own generator
    seeded from (seed, perturbation index), so its file depends on ``seed`` and ``batch_size``
    only (not on which other perturbations are written). Batches of ``batch_size`` images are
    generated on ``device``. Files are written atomically.
    """
    _check_names(names)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(
            f"images must be uint8 with shape (N, 3, H, W), got "
            f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n, _, h, w = images.shape
    device = torch.device(device)

    for name in tqdm(names, desc="CIFAR-10-P", unit="perturbation"):
        state = np.random.SeedSequence([seed, PERTURBATIONS.index(name)]).generate_state(1, np.uint64)[0]
        generator = torch.Generator(device=device).manual_seed(int(state))

        def write(temp: str, name: str = name, generator: torch.Generator = generator) -> None:
            out = np.lib.format.open_memmap(temp, mode="w+", dtype=np.uint8, shape=(n, FRAMES[name], h, w, 3))
            for start in range(0, n, batch_size):
                batch = perturbation_sequence(images[start : start + batch_size], name, generator, device)
                out[start : start + len(batch)] = batch.permute(0, 1, 3, 4, 2).cpu().numpy()
            out.flush()
            del out

        with atomic_path(root / f"{name}.npy") as tmp:
            write(str(tmp))
