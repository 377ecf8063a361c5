"""CIFAR-10-C on disk: checking, loading and generating the official layout.

Layout (Hendrycks & Dietterich, 2019): ``<root>/<corruption>.npy`` holds uint8 images of shape
(5 * N, H, W, 3), severity-major: rows ``(s - 1) * N : s * N`` are severity s, each block in
the order of the clean test set; ``<root>/labels.npy`` holds the N test labels repeated 5
times. The official files have N = 10000 and 32x32 images; any N, H, W are accepted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from robustflow.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from robustflow.io import atomic_path

LABELS_FILE = "labels.npy"
N_SEVERITIES = len(SEVERITIES)
HOW_TO_OBTAIN = (
    "Download CIFAR-10-C.tar from Zenodo record 2535967 (https://zenodo.org/records/2535967) and "
    "extract it so that <root>/<corruption>.npy and <root>/labels.npy exist, or let the pipeline "
    "generate the set (robustflow.data.cifar10c.write_cifar10c)."
)


def check_names(names: Sequence[str], known: Sequence[str], what: str) -> None:
    """``names`` is a sequence (not one string) of names in ``known``; else a ValueError naming them."""
    if isinstance(names, str):
        raise ValueError(f"{what} must be a sequence of names, got the string {names!r}")
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; valid: {', '.join(known)}")


def _check_names(corruptions: Sequence[str]) -> None:
    check_names(corruptions, CORRUPTIONS, "corruptions")


def _open(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found. {HOW_TO_OBTAIN}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path}: not a readable .npy array ({error}). {HOW_TO_OBTAIN}") from error


def _check_labels(path: Path) -> np.ndarray:
    labels = _open(path)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{path}: expected a 1-D integer array, got shape {labels.shape} dtype {labels.dtype}. {HOW_TO_OBTAIN}"
        )
    if len(labels) == 0 or len(labels) % N_SEVERITIES:
        raise ValueError(
            f"{path}: expected a positive multiple of {N_SEVERITIES} labels, got {len(labels)}. {HOW_TO_OBTAIN}"
        )
    blocks = np.asarray(labels).reshape(N_SEVERITIES, -1)
    if not (blocks == blocks[0]).all():
        raise ValueError(
            f"{path}: the {N_SEVERITIES} severity blocks of labels differ; expected the test labels repeated "
            f"{N_SEVERITIES} times. {HOW_TO_OBTAIN}"
        )
    return labels


def _check_images(path: Path, n_rows: int) -> np.ndarray:
    images = _open(path)
    if images.dtype != np.uint8:
        raise ValueError(f"{path}: expected dtype uint8, got {images.dtype}. {HOW_TO_OBTAIN}")
    if images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"{path}: expected shape (5 * N, H, W, 3), got {images.shape}. {HOW_TO_OBTAIN}")
    if images.shape[0] != n_rows:
        raise ValueError(
            f"{path}: has {images.shape[0]} images but {LABELS_FILE} has {n_rows} labels. {HOW_TO_OBTAIN}"
        )
    return images


def check_cifar10c(root: str | Path, corruptions: Sequence[str]) -> None:
    """Check the layout under ``root`` for the given corruptions; raise FileNotFoundError or
    ValueError naming the offending file, what is wrong, and how to obtain the data."""
    _check_names(corruptions)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: CIFAR-10-C directory not found. {HOW_TO_OBTAIN}")
    n_rows = len(_check_labels(root / LABELS_FILE))
    for name in corruptions:
        _check_images(root / f"{name}.npy", n_rows)


def load_cifar10c(root: str | Path, corruption: str, severity: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (uint8, N x 3 x H x W) and labels (int64, N) of one corruption at one severity."""
    _check_names([corruption])
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    root = Path(root)
    labels = _check_labels(root / LABELS_FILE)
    images = _check_images(root / f"{corruption}.npy", len(labels))
    n = len(labels) // N_SEVERITIES
    block = slice((severity - 1) * n, severity * n)
    image_tensor = torch.from_numpy(np.array(images[block].transpose(0, 3, 1, 2), order="C"))
    return image_tensor, torch.from_numpy(np.array(labels[block], dtype=np.int64))


def write_cifar10c(
    root: str | Path,
    images: torch.Tensor,
    labels: torch.Tensor,
    corruptions: Sequence[str],
    seed: int,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
) -> None:
    """Generate the CIFAR-10-C layout under ``root`` from clean test images with the engine.

    ``images``: uint8 (N, 3, H, W); ``labels``: (N,) integers. Each (corruption, severity)
    gets its own generator seeded from (seed, corruption index, severity), so the output
    depends on ``seed`` and ``batch_size`` only (not on which other corruptions are written).
    Corrupted images are rounded to uint8. Files are written atomically.
    """
    _check_names(corruptions)
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be uint8 with shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    n, _, h, w = images.shape
    device = torch.device(device)

    labels_array = np.tile(labels.cpu().numpy().astype(np.int64), N_SEVERITIES)

    def write_labels(temp: str) -> None:
        with open(temp, "wb") as handle:  # a file object: np.save would append ".npy" to a name
            np.save(handle, labels_array)

    with atomic_path(root / LABELS_FILE) as tmp:
        write_labels(str(tmp))

    for name in tqdm(corruptions, desc="CIFAR-10-C", unit="corruption"):
        index = CORRUPTIONS.index(name)

        def write(temp: str, name: str = name, index: int = index) -> None:
            out = np.lib.format.open_memmap(
                temp, mode="w+", dtype=np.uint8, shape=(N_SEVERITIES * n, h, w, 3)
            )
            for severity in SEVERITIES:
                state = np.random.SeedSequence([seed, index, severity]).generate_state(1, np.uint64)[0]
                generator = torch.Generator(device=device).manual_seed(int(state))
                for start in range(0, n, batch_size):
                    batch = images[start : start + batch_size].to(device).float() / 255.0
                    corrupted = corrupt(batch, name, severity, generator)
                    as_uint8 = (corrupted * 255.0).round().to("cpu", torch.uint8).permute(0, 2, 3, 1)
                    row = (severity - 1) * n + start
                    out[row : row + len(batch)] = as_uint8.numpy()
            out.flush()
            del out

        with atomic_path(root / f"{name}.npy") as tmp:
            write(str(tmp))
