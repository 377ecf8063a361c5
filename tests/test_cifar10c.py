"""CIFAR-10-C layout: loading a hand-made fixture, layout errors, and generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustflow.corruptions import corrupt
from robustflow.data.cifar10c import check_cifar10c, load_cifar10c, write_cifar10c

N = 10


def official_fixture(root: Path, names=("fog", "contrast")) -> tuple[np.ndarray, np.ndarray]:
    """Files in the official layout, written with NumPy: pixel values encode
    (severity, image index) so that a wrong block or order is visible."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, N)
    np.save(root / "labels.npy", np.tile(labels, 5))
    images = np.zeros((5 * N, 32, 32, 3), dtype=np.uint8)
    for severity in range(1, 6):
        for i in range(N):
            images[(severity - 1) * N + i] = 10 * severity + i
    images[..., 1] = rng.integers(0, 256, images.shape[:3])  # non-constant channel
    for name in names:
        np.save(root / f"{name}.npy", images)
    return images, labels


def test_official_layout_loads(tmp_path: Path) -> None:
    images, labels = official_fixture(tmp_path)
    check_cifar10c(tmp_path, ["fog", "contrast"])
    for severity in range(1, 6):
        x, y = load_cifar10c(tmp_path, "fog", severity)
        assert x.dtype == torch.uint8 and x.shape == (N, 3, 32, 32)
        assert y.dtype == torch.int64 and torch.equal(y, torch.from_numpy(labels))
        assert torch.equal(x[:, 0, 0, 0], torch.arange(N, dtype=torch.uint8) + 10 * severity)
        block = images[(severity - 1) * N : severity * N]
        assert torch.equal(x, torch.from_numpy(block).permute(0, 3, 1, 2))


@pytest.mark.parametrize(
    ("breakage", "file", "message"),
    [
        (lambda root: (root / "fog.npy").unlink(), "fog.npy", "not found"),
        (
            lambda root: np.save(root / "fog.npy", np.zeros((5 * N, 32, 32, 3), np.float32)),
            "fog.npy",
            "uint8",
        ),
        (lambda root: np.save(root / "fog.npy", np.zeros((5 * N, 32, 32), np.uint8)), "fog.npy", "shape"),
        (lambda root: np.save(root / "fog.npy", np.zeros((4 * N, 32, 32, 3), np.uint8)), "fog.npy", "labels"),
        (lambda root: np.save(root / "labels.npy", np.arange(5 * N)), "labels.npy", "blocks"),
        (lambda root: np.save(root / "labels.npy", np.zeros(5 * N + 1, np.int64)), "labels.npy", "multiple"),
        (lambda root: np.save(root / "labels.npy", np.zeros(5 * N)), "labels.npy", "integer"),
        (lambda root: (root / "labels.npy").write_text("not numpy"), "labels.npy", "readable"),
    ],
)
def test_layout_errors_name_the_file(tmp_path: Path, breakage, file: str, message: str) -> None:
    official_fixture(tmp_path)
    breakage(tmp_path)
    error_type = FileNotFoundError if message == "not found" else ValueError
    with pytest.raises(error_type, match=message) as info:
        check_cifar10c(tmp_path, ["fog", "contrast"])
    assert str(tmp_path / file) in str(info.value) and "2535967" in str(info.value)
    with pytest.raises(error_type):
        load_cifar10c(tmp_path, "fog", 1)


def test_bad_arguments(tmp_path: Path) -> None:
    official_fixture(tmp_path)
    with pytest.raises(FileNotFoundError, match="2535967"):
        check_cifar10c(tmp_path / "missing", ["fog"])
    with pytest.raises(ValueError, match="gaussian_noise"):
        check_cifar10c(tmp_path, ["rain"])
    with pytest.raises(ValueError, match="sequence"):
        check_cifar10c(tmp_path, "fog")
    for severity in (0, 6, 1.0):
        with pytest.raises(ValueError, match="severity"):
            load_cifar10c(tmp_path, "fog", severity)
    with pytest.raises(ValueError, match="uint8"):
        write_cifar10c(tmp_path, torch.zeros(N, 3, 32, 32), torch.zeros(N), ["fog"], seed=0)
    with pytest.raises(ValueError, match="labels"):
        write_cifar10c(
            tmp_path, torch.zeros(N, 3, 32, 32, dtype=torch.uint8), torch.zeros(N + 1), ["fog"], seed=0
        )


def test_write_generates_the_layout(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    clean = (torch.rand(N, 3, 16, 16, generator=generator) * 255).to(torch.uint8)
    labels = torch.randint(0, 10, (N,), generator=generator)
    names = ["contrast", "gaussian_noise"]
    write_cifar10c(tmp_path, clean, labels, names, seed=3, batch_size=4)
    check_cifar10c(tmp_path, names)
    assert not list(tmp_path.glob("*.tmp"))
    for severity in range(1, 6):
        x, y = load_cifar10c(tmp_path, "contrast", severity)
        assert torch.equal(y, labels)
        # contrast is deterministic: block s must be the engine's output at severity s
        expected = (corrupt(clean.float() / 255, "contrast", severity, torch.Generator()) * 255).round()
        assert torch.equal(x, expected.to(torch.uint8))
    # same seed and batch size: identical files; another seed: different noise
    again = tmp_path / "again"
    write_cifar10c(again, clean, labels, ["gaussian_noise"], seed=3, batch_size=4)
    assert np.array_equal(np.load(again / "gaussian_noise.npy"), np.load(tmp_path / "gaussian_noise.npy"))
    other = tmp_path / "other"
    write_cifar10c(other, clean, labels, ["gaussian_noise"], seed=4, batch_size=4)
    assert not np.array_equal(np.load(other / "gaussian_noise.npy"), np.load(tmp_path / "gaussian_noise.npy"))
    # noise grows with severity block by block
    noise = np.load(tmp_path / "gaussian_noise.npy").astype(float).reshape(5, N, 16, 16, 3)
    reference = clean.permute(0, 2, 3, 1).numpy().astype(float)
    spread = [np.abs(noise[s] - reference).mean() for s in range(5)]
    assert all(b > a for a, b in zip(spread, spread[1:]))
