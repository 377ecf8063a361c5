"""CIFAR-10-P layout: loading a hand-made fixture, layout errors, and generation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustflow.data.cifar10p import check_cifar10p, load_cifar10p, write_cifar10p
from robustflow.perturbations import FRAMES, perturbation_sequence
from tests.test_corruptions import natural_images

N = 6
NAMES = ("rotate", "translate")


def official_fixture(root: Path, names=NAMES) -> dict[str, np.ndarray]:
    """Files in the official layout, written with NumPy: channel 0 encodes (image, frame) so
    that a wrong order or axis is visible."""
    rng = np.random.default_rng(0)
    written = {}
    for name in names:
        sequences = rng.integers(0, 256, (N, FRAMES[name], 32, 32, 3), dtype=np.uint8)
        sequences[..., 0] = (40 * np.arange(N)[:, None] + np.arange(FRAMES[name])[None, :])[:, :, None, None]
        np.save(root / f"{name}.npy", sequences)
        written[name] = sequences
    return written


def test_official_layout_loads(tmp_path: Path) -> None:
    written = official_fixture(tmp_path)
    check_cifar10p(tmp_path, NAMES, N)
    for name in NAMES:
        sequences = load_cifar10p(tmp_path, name)
        assert sequences.dtype == torch.uint8 and sequences.shape == (N, FRAMES[name], 3, 32, 32)
        expected = 40 * torch.arange(N)[:, None] + torch.arange(FRAMES[name])[None, :]
        assert torch.equal(sequences[:, :, 0, 5, 7], expected.to(torch.uint8))
        assert torch.equal(sequences, torch.from_numpy(written[name]).permute(0, 1, 4, 2, 3))


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda root: (root / "rotate.npy").unlink(), "not found"),
        (lambda root: np.save(root / "rotate.npy", np.zeros((N, 31, 32, 32, 3), np.float32)), "uint8"),
        (lambda root: np.save(root / "rotate.npy", np.zeros((N * 31, 32, 32, 3), np.uint8)), "shape"),
        (lambda root: np.save(root / "rotate.npy", np.zeros((N, 31, 3, 32, 32), np.uint8)), "shape"),
        (lambda root: np.save(root / "rotate.npy", np.zeros((N, 16, 32, 32, 3), np.uint8)), "31 frames"),
        (lambda root: np.save(root / "rotate.npy", np.zeros((N - 1, 31, 32, 32, 3), np.uint8)), "test"),
        (lambda root: (root / "rotate.npy").write_text("not numpy"), "readable"),
    ],
)
def test_layout_errors_name_the_file_and_the_source(tmp_path: Path, breakage, message: str) -> None:
    official_fixture(tmp_path)
    breakage(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=message) as raised:
        check_cifar10p(tmp_path, NAMES, N)
    assert "rotate.npy" in str(raised.value) and "zenodo.org/records/2535967" in str(raised.value)


def test_missing_root_and_bad_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="directory not found"):
        check_cifar10p(tmp_path / "absent", NAMES, N)
    with pytest.raises(ValueError, match="unknown perturbations"):
        check_cifar10p(tmp_path, ["fog"], N)
    with pytest.raises(ValueError, match="string"):
        check_cifar10p(tmp_path, "rotate", N)
    with pytest.raises(ValueError, match="unknown perturbations"):
        load_cifar10p(tmp_path, "fog")


def test_written_set_passes_the_check_and_matches_the_engine(tmp_path: Path) -> None:
    images = natural_images(5)
    write_cifar10p(tmp_path, images, ["translate", "gaussian_noise"], seed=0, batch_size=2)
    check_cifar10p(tmp_path, ["translate", "gaussian_noise"], 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "gaussian_noise.npy",
        "translate.npy",
    ]  # no temp files
    assert torch.equal(load_cifar10p(tmp_path, "translate"), perturbation_sequence(images, "translate"))
    noisy = load_cifar10p(tmp_path, "gaussian_noise")
    assert torch.equal(noisy[:, 0], images) and not torch.equal(noisy[:, 1], images)
    # the file depends on the seed (and batch size) only, not on the other names written
    write_cifar10p(tmp_path / "again", images, ["gaussian_noise"], seed=0, batch_size=2)
    assert torch.equal(load_cifar10p(tmp_path / "again", "gaussian_noise"), noisy)
    write_cifar10p(tmp_path / "other", images, ["gaussian_noise"], seed=1, batch_size=2)
    assert not torch.equal(load_cifar10p(tmp_path / "other", "gaussian_noise"), noisy)


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    images = natural_images(3)
    write_cifar10p(tmp_path, images, ["translate"], seed=0)
    before = (tmp_path / "translate.npy").read_bytes()

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr("robustflow.data.cifar10p.perturbation_sequence", fail)
    with pytest.raises(RuntimeError, match="interrupted"):
        write_cifar10p(tmp_path, images, ["translate"], seed=0)
    assert (tmp_path / "translate.npy").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["translate.npy"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": torch.zeros(2, 3, 32, 32)}, "uint8"),
        ({"images": torch.zeros(3, 32, 32, dtype=torch.uint8)}, "shape"),
        ({"names": ["fog"]}, "unknown"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_write_rejects(tmp_path: Path, kwargs: dict, message: str) -> None:
    arguments = {"root": tmp_path, "images": natural_images(2), "names": ["rotate"], "seed": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        write_cifar10p(**arguments)
