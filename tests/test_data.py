"""Datasets: digits and CIFAR-10 loading, splits, statistics, errors."""

import pickle
import re
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_load_digits

from robustflow.data import (
    DATASETS,
    DatasetIntegrityError,
    DatasetNotFoundError,
    ImageSplits,
    channel_stats,
    load_cifar10,
    load_dataset,
    load_digits,
    stratified_split,
)
from robustflow.data_files import cifar10_missing_files
from tests.fixtures import CIFAR10_CLASS_NAMES, write_cifar10_fixture


def _rows(x: torch.Tensor) -> list[bytes]:
    return sorted(image.numpy().tobytes() for image in x)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


# ----------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_ranges(digits):
    assert digits.train_x.shape[1:] == (3, 32, 32)
    assert len(digits.train_x) + len(digits.val_x) + len(digits.test_x) == 1797
    for x, y in [(digits.train_x, digits.train_y), (digits.val_x, digits.val_y), (digits.test_x, digits.test_y)]:
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert int(y.min()) == 0 and int(y.max()) == 9
        assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])  # grey replicated to RGB
    assert int(digits.train_x.min()) == 0 and int(digits.train_x.max()) > 200
    assert digits.classes == tuple(str(d) for d in range(10))
    assert digits.num_classes == 10 and digits.image_size == 32
    assert len(digits.test_x) == pytest.approx(0.15 * 1797, abs=2)
    assert len(digits.val_x) == pytest.approx(0.15 * 1797, abs=2)


def test_digits_at_native_size_are_the_sklearn_images_partitioned():
    # At 8x8 the bilinear resize is the identity, so each image is round(v / 16 * 255).
    splits = load_digits(image_size=8)
    bunch = sklearn_load_digits()
    expected = torch.as_tensor(np.round(bunch.images / 16 * 255).astype(np.uint8)).unsqueeze(1).expand(-1, 3, -1, -1)
    got = torch.cat([splits.train_x, splits.val_x, splits.test_x])
    assert _rows(got) == _rows(expected)  # disjoint and covering, as multisets of images
    # labels travel with their images
    image_label = {img.numpy().tobytes(): int(lab) for img, lab in zip(expected, bunch.target)}
    duplicates = len(expected) - len(image_label)
    mismatched = sum(
        image_label[img.numpy().tobytes()] != int(lab)
        for img, lab in zip(got, torch.cat([splits.train_y, splits.val_y, splits.test_y]))
    )
    assert mismatched <= duplicates


def test_digits_split_is_deterministic_and_seed_dependent(digits):
    again = load_digits()
    assert torch.equal(digits.train_x, again.train_x) and torch.equal(digits.test_y, again.test_y)
    other = load_digits(split_seed=1)
    assert not torch.equal(digits.test_y, other.test_y)


def test_digits_split_is_stratified(digits):
    total = Counter((digits.train_y.tolist() + digits.val_y.tolist() + digits.test_y.tolist()))
    for split_y in (digits.val_y, digits.test_y):
        counts = Counter(split_y.tolist())
        for label, n in total.items():
            assert abs(counts[label] - 0.15 * n) <= 1.5


def test_mean_and_std_are_those_of_the_train_split(digits):
    x = digits.train_x.double() / 255
    assert digits.mean == pytest.approx(x.mean(dim=(0, 2, 3)).tolist(), abs=1e-9)
    assert digits.std == pytest.approx(x.std(dim=(0, 2, 3), unbiased=False).tolist(), abs=1e-9)


def test_channel_stats_hand_computed():
    # channel 0 holds 0 and 255 -> mean 0.5, std 0.5; channel 1 constant 51 -> 0.2, 0
    images = torch.tensor([[[[0, 255]], [[51, 51]]]], dtype=torch.uint8)
    mean, std = channel_stats(images)
    assert mean == pytest.approx((0.5, 0.2)) and std == pytest.approx((0.5, 0.0))


def test_stratified_split_partitions_indices():
    labels = np.repeat(np.arange(4), 25)
    train, val, test = stratified_split(labels, (0.2, 0.2), seed=3)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(100))
    assert Counter(labels[test]) == {0: 5, 1: 5, 2: 5, 3: 5}
    with pytest.raises(ValueError, match="fractions"):
        stratified_split(labels, (0.6, 0.5), seed=0)


def test_stratified_split_sizes_shares_and_seeds():
    # classes of 50, 30 and 20: a part of ceil(0.15 * 100) = 15 takes shares 7.5, 4.5, 3 -> 8, 4, 3
    # (the largest remainder, an equal tie, goes to the earlier class)
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, val, test = stratified_split(labels, (0.15, 0.15), seed=0)
    assert len(test) == 15 and Counter(labels[test].tolist()) == {0: 8, 1: 4, 2: 3}
    # the val part shares 15 among what is left (42, 26, 17): 7.41, 4.59, 3.0 -> 7, 5, 3
    assert len(val) == 15 and Counter(labels[val].tolist()) == {0: 7, 1: 5, 2: 3}
    assert len(train) == 70 and all(np.all(np.diff(part) > 0) for part in (train, val, test))
    again = stratified_split(labels, (0.15, 0.15), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test)))
    other = stratified_split(labels, (0.15, 0.15), seed=1)
    assert not np.array_equal(other[2], test)
    with pytest.raises(ValueError, match="cannot hold each of the 3 classes"):
        stratified_split(labels, (0.01,), seed=0)  # a part of 1 image for 3 classes
    with pytest.raises(ValueError, match=r"too few of: 3 \(2\)"):
        stratified_split(np.append(labels, [3, 3]), (0.15, 0.15), seed=0)  # class 3: 2 images for 3 parts
    with pytest.raises(ValueError, match="no labels"):
        stratified_split(np.array([], dtype=int), (0.2,), seed=0)


def test_digits_are_scikit_learns_without_importing_it():
    from sklearn.datasets import load_digits as sklearn_digits

    from robustflow.data.digits import digits_arrays

    images, labels = digits_arrays()
    reference = sklearn_digits()
    assert np.array_equal(images, reference.images) and np.array_equal(labels, reference.target)
    code = "import sys; from robustflow.data import load_digits; load_digits(); print('sklearn' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_load_dataset_registry():
    assert set(DATASETS) == {"digits", "cifar10"}
    assert load_dataset("digits", image_size=16).image_size == 16
    with pytest.raises(ValueError, match="cifar10, digits"):
        load_dataset("mnist")


def test_image_splits_rejects_float_images(digits):
    with pytest.raises(ValueError, match="train_x must be a uint8"):
        ImageSplits(
            train_x=digits.train_x.float(), train_y=digits.train_y, val_x=digits.val_x, val_y=digits.val_y,
            test_x=digits.test_x, test_y=digits.test_y, classes=digits.classes, mean=digits.mean, std=digits.std,
        )


# ----------------------------------------------------------------------------- cifar10


@pytest.fixture
def cifar_root(tmp_path):
    write_cifar10_fixture(tmp_path, n_per_batch=20, n_test=30, seed=0)
    return tmp_path


def _read(path):
    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def test_cifar10_fixture_loads_with_correct_shapes_labels_and_classes(cifar_root):
    splits = load_cifar10(cifar_root, verify_md5=False)
    assert splits.classes == CIFAR10_CLASS_NAMES
    assert splits.train_x.shape == (90, 3, 32, 32) and splits.val_x.shape == (10, 3, 32, 32)
    assert splits.test_x.shape == (30, 3, 32, 32) and splits.train_x.dtype == torch.uint8
    assert sorted(splits.val_y.tolist()) == list(range(10))  # stratified: one of each class

    folder = cifar_root / "cifar-10-batches-py"
    raw = [_read(folder / f"data_batch_{i}") for i in range(1, 6)]
    raw_x = np.concatenate([b[b"data"] for b in raw])
    raw_y = sum((b[b"labels"] for b in raw), [])
    label_of = {row.tobytes(): label for row, label in zip(raw_x, raw_y)}
    got_x = torch.cat([splits.train_x, splits.val_x]).reshape(-1, 3072).numpy()
    got_y = torch.cat([splits.train_y, splits.val_y]).tolist()
    assert sorted(row.tobytes() for row in got_x) == sorted(label_of)  # train + val = the 5 batches
    assert [label_of[row.tobytes()] for row in got_x] == got_y
    test = _read(folder / "test_batch")
    assert splits.test_y.tolist() == test[b"labels"]  # official order kept


def test_cifar10_pixel_lands_at_its_channel_row_column(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "test_batch"
    batch = _read(path)
    batch[b"data"][:] = 0
    batch[b"data"][3, 1024 * 1 + 32 * 5 + 7] = 200  # green, row 5, column 7 of image 3
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    test_x = load_cifar10(cifar_root, verify_md5=False).test_x
    assert int(test_x[3, 1, 5, 7]) == 200
    assert int(test_x.sum()) == 200


def test_cifar10_md5_mismatch_names_the_file(cifar_root):
    with pytest.raises(DatasetIntegrityError, match="batches.meta.*md5"):
        load_cifar10(cifar_root, verify_md5=True)


def test_cifar10_missing_root_names_the_path(tmp_path):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(root / "cifar-10-batches-py"))) as info:
        load_cifar10(root)
    assert isinstance(info.value, FileNotFoundError)
    assert "cifar-10-python.tar.gz" in str(info.value) and "download=True" in str(info.value)
    assert len(cifar10_missing_files(root)) == 7


def test_cifar10_missing_file_is_named(cifar_root):
    assert cifar10_missing_files(cifar_root) == []
    missing = cifar_root / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    assert cifar10_missing_files(cifar_root) == [missing]
    with pytest.raises(DatasetNotFoundError, match=re.escape(str(missing))):
        load_dataset("cifar10", root=cifar_root, verify_md5=False)


def test_cifar10_split_seed_changes_val_only_and_deterministically(cifar_root):
    a = load_cifar10(cifar_root, split_seed=0, verify_md5=False)
    b = load_cifar10(cifar_root, split_seed=0, verify_md5=False)
    c = load_cifar10(cifar_root, split_seed=1, verify_md5=False)
    assert torch.equal(a.val_x, b.val_x) and torch.equal(a.train_x, b.train_x)
    assert not torch.equal(a.val_x, c.val_x)
    assert torch.equal(a.test_x, c.test_x)
