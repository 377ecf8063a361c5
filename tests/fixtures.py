"""Writers of small on-disk dataset fixtures in the real formats, shared by the tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]

CIFAR10_CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))


def _cifar_batch(rng: np.random.Generator, n: int, batch_label: str, first_index: int) -> dict:
    """One batch dict as the real pickles hold it (bytes keys, data rows of 1024 R, G, B values)."""
    if n < len(CIFAR10_CLASS_NAMES):
        raise ValueError(f"a batch needs at least {len(CIFAR10_CLASS_NAMES)} images to hold every class, got {n}")
    labels = rng.permutation(np.arange(n) % len(CIFAR10_CLASS_NAMES))
    return {
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        b"filenames": [f"fixture_{first_index + i:05d}.png".encode() for i in range(n)],
    }


def _dump(obj: dict, path: Path) -> None:
    with path.open("wb") as handle:
        pickle.dump(obj, handle, protocol=2)


def write_cifar10_fixture(root: str | Path, n_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """Write a tiny CIFAR-10 in torchvision's layout under ``root``; returns the batches folder.

    Images are random; every batch holds every class (``n // 10`` or more times each).
    The md5 sums are of course not the published ones.
    """
    folder = Path(root) / CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate(CIFAR10_TRAIN_FILES):
        _dump(_cifar_batch(rng, n_per_batch, f"training batch {i + 1} of 5", i * n_per_batch), folder / name)
    _dump(_cifar_batch(rng, n_test, "testing batch 1 of 1", 0), folder / "test_batch")
    _dump(
        {
            b"num_cases_per_batch": n_per_batch,
            b"label_names": [name.encode() for name in CIFAR10_CLASS_NAMES],
            b"num_vis": 3072,
        },
        folder / "batches.meta",
    )
    return folder


def write_image_folder_fixture(root: str | Path, classes=("no_road", "road"), n_per_class: int = 6,
                               size: int = 20, seed: int = 0) -> Path:
    """Two class folders of grayscale PNGs, the layout of a user's own binary-task images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(n_per_class):
            pixels = rng.integers(0, 128, (size, size)) + 127 * label
            Image.fromarray(pixels.astype(np.uint8), mode="L").save(folder / f"{index:03d}.png")
    return root


def write_bg_challenge_fixture(root: str | Path, variations=None, classes=("00_dog", "01_bird"),
                               per_class: int = 3, size: int = 12, train_splits: bool = True) -> Path:
    """The backgrounds challenge's layout: <variation>/val/<NN_class>/ images (plus original/train)
    of flat colours, and fg_mask/val/<NN_class>/<image>.npy masks whose top half is foreground;
    with ``train_splits`` also the training splits that mixed_rand and paired training read
    (mixed_rand/train images, fg_mask/train masks of the original/train images)."""
    from PIL import Image

    from robustflow.data.backgrounds import VARIATIONS

    root = Path(root)
    for variation in variations or VARIATIONS:
        with_train = variation == "original" or (train_splits and variation == "mixed_rand")
        for split in (["train", "val"] if with_train else ["val"]):
            for c, folder in enumerate(classes):
                path = root / variation / split / folder
                path.mkdir(parents=True)
                for i in range(per_class):
                    pixels = np.full((size, size + 4, 3), 40 * c + 10 * i, dtype=np.uint8)
                    name = f"n0{c}_{i}.JPEG" if split == "val" else f"t{c}_{i}.png"
                    Image.fromarray(pixels).save(path / name)
    for split, prefix in (("val", "n0"), ("train", "t")) if train_splits else (("val", "n0"),):
        for c, folder in enumerate(classes):
            path = root / "fg_mask" / split / folder
            path.mkdir(parents=True)
            for i in range(per_class):
                mask = np.zeros((size, size + 4), dtype=np.uint8)
                mask[: size // 2] = 1
                np.save(path / f"{prefix}{c}_{i}.npy", mask)
    return root


PAPER_DATA = {
    "datasets": {"cifar10": {"root": "fixtures/cifar"}},
    "learning_rule_study": {"task": {"source": "folder", "root": "fixtures/road_images"}},
}


def paper_overrides(workdir: Path, repo: Path = REPO) -> dict:
    """Fixture data for config/paper.yaml: CIFAR-10 in its real format, an image-folder task,
    the backgrounds challenge's layout, and stand-in files where the timm ImageNet weights would be."""
    write_cifar10_fixture(workdir / "fixtures" / "cifar")
    write_image_folder_fixture(workdir / "fixtures" / "road_images")
    write_bg_challenge_fixture(workdir / "fixtures" / "bg_challenge")
    paper = yaml.safe_load((repo / "config" / "paper.yaml").read_text())

    def stand_in_weights(model_name: str) -> str:
        weights = workdir / "fixtures" / f"{model_name}.safetensors"
        weights.write_bytes(b"stand-in: the dry run only checks presence")
        return str(weights)

    models = paper["architecture_study"]["models"]
    for model in models:
        model["pretrained_file"] = stand_in_weights(model["name"])
    background_models = paper["background_study"]["models"]
    for model in background_models:
        model["pretrained_file"] = stand_in_weights(model["name"])
    return {**PAPER_DATA, "architecture_study": {"models": models},
            "background_study": {"bg_challenge": {"root": "fixtures/bg_challenge"}, "models": background_models}}


def write_cifar10p_fixture(root: str | Path, names, n: int = 20) -> Path:
    """The CIFAR-10-P layout: <root>/<perturbation>.npy, uint8 (n, T, 32, 32, 3); by default one
    sequence per test image of `write_cifar10_fixture`."""
    from robustflow.data_files import CIFAR10P_FRAMES

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        np.save(root / f"{name}.npy", rng.integers(0, 256, (n, CIFAR10P_FRAMES[name], 32, 32, 3), dtype=np.uint8))
    return root
