import numpy as np
import pytest
import torch
from PIL import Image

from robustflow.data.binary_task import BinaryTask, digits_binary_task, image_folder_binary_task


@pytest.fixture(scope="module")
def pair_task() -> BinaryTask:
    return digits_binary_task(positive=(0,), negative=(1,), image_size=16, split_seed=3)


def test_digits_pair_shapes_ranges_and_labels(pair_task):
    from sklearn.datasets import load_digits

    counts = np.bincount(load_digits().target)
    n_total = len(pair_task.train_y) + len(pair_task.test_y)
    assert n_total == 2 * min(counts[0], counts[1])  # balanced by subsampling the larger digit
    for x, y in ((pair_task.train_x, pair_task.train_y), (pair_task.test_x, pair_task.test_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 16, 16) and x.shape[0] == y.shape[0]
        assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
        assert set(y.tolist()) == {0, 1}
    assert pair_task.n_inputs == 256
    assert pair_task.class_names == ("digit 1", "digit 0")
    assert len(pair_task.test_y) == pytest.approx(0.3 * n_total, abs=2)


def test_default_task_has_the_seeds_4096_inputs():
    task = digits_binary_task()
    assert task.train_x.shape[1:] == (1, 64, 64)
    assert task.n_inputs == 4096


def test_digit_images_are_upsampled_8x8_digits():
    from sklearn.datasets import load_digits

    task = digits_binary_task(positive=(0,), negative=(1,), image_size=8, split_seed=0)
    originals = torch.as_tensor(load_digits().images, dtype=torch.float32) / 16.0
    # At the native size bilinear resizing is the identity: every image is one of the originals.
    flat_orig = originals.reshape(len(originals), -1)
    for image in task.train_x[:5]:
        distances = (flat_orig - image.reshape(1, -1)).abs().amax(dim=1)
        assert float(distances.min()) < 1e-6


def test_one_vs_rest_is_balanced_and_stratified():
    task = digits_binary_task(positive=(0,), negative=tuple(range(1, 10)), image_size=8)
    for y in (task.train_y, task.test_y):
        assert int((y == 0).sum()) == int((y == 1).sum())
    assert task.class_names == ("digits 1,2,3,4,5,6,7,8,9", "digit 0")


def test_one_vs_rest_without_balance_keeps_every_image():
    from sklearn.datasets import load_digits

    task = digits_binary_task(positive=(0,), negative=(1, 2), image_size=8, balance=False)
    counts = np.bincount(load_digits().target)
    assert int((task.train_y == 1).sum() + (task.test_y == 1).sum()) == counts[0]
    assert int((task.train_y == 0).sum() + (task.test_y == 0).sum()) == counts[1] + counts[2]


def test_split_is_deterministic_and_depends_on_seed(pair_task):
    again = digits_binary_task(positive=(0,), negative=(1,), image_size=16, split_seed=3)
    other = digits_binary_task(positive=(0,), negative=(1,), image_size=16, split_seed=4)
    assert torch.equal(again.train_x, pair_task.train_x) and torch.equal(again.test_y, pair_task.test_y)
    assert not torch.equal(other.train_x, pair_task.train_x)


def test_train_and_test_do_not_overlap(pair_task):
    train = {tuple(row.tolist()) for row in pair_task.train_x.reshape(len(pair_task.train_x), -1)}
    test = [tuple(row.tolist()) for row in pair_task.test_x.reshape(len(pair_task.test_x), -1)]
    # load_digits has a few exact duplicates, so allow a handful of coincidences, not a leak.
    assert sum(row in train for row in test) <= 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"positive": (0,), "negative": (0, 1)}, "share"),
        ({"positive": (), "negative": (1,)}, "positive"),
        ({"positive": (10,), "negative": (1,)}, "positive"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"image_size": 0}, "image_size"),
    ],
)
def test_digits_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits_binary_task(**kwargs)


def _write_images(folder, n, value):
    folder.mkdir(parents=True)
    for i in range(n):
        rgb = np.full((20, 30, 3), value, dtype=np.uint8)
        rgb[0, i] = 255 - value  # images differ, so each can be traced
        suffix = ".png" if i % 2 == 0 else ".jpg"
        Image.fromarray(rgb).save(folder / f"img_{i}{suffix}")


def test_image_folder_task(tmp_path):
    _write_images(tmp_path / "road", 4, 200)
    _write_images(tmp_path / "not_road", 6, 40)
    (tmp_path / "not_road" / "notes.txt").write_text("not an image")

    task = image_folder_binary_task(tmp_path, image_size=12, test_fraction=0.3, split_seed=1)
    assert task.class_names == ("not_road", "road")  # sorted names -> labels 0, 1
    assert task.train_x.shape[1:] == (1, 12, 12) and task.train_x.dtype == torch.float32
    assert len(task.train_y) + len(task.test_y) == 10
    assert int((task.test_y == 0).sum()) == 2 and int((task.test_y == 1).sum()) == 1
    # Gray level of a uniform image survives conversion: class 1 is bright, class 0 dark.
    x = torch.cat([task.train_x, task.test_x])
    y = torch.cat([task.train_y, task.test_y])
    medians = x.reshape(len(x), -1).median(dim=1).values
    assert torch.allclose(medians[y == 1], torch.full_like(medians[y == 1], 200 / 255), atol=0.02)
    assert torch.allclose(medians[y == 0], torch.full_like(medians[y == 0], 40 / 255), atol=0.02)
    again = image_folder_binary_task(tmp_path, image_size=12, test_fraction=0.3, split_seed=1)
    assert torch.equal(again.train_x, task.train_x)


def test_image_folder_missing_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        image_folder_binary_task(missing)


def test_image_folder_needs_exactly_two_classes(tmp_path):
    _write_images(tmp_path / "a", 2, 10)
    _write_images(tmp_path / "b", 2, 20)
    _write_images(tmp_path / "c", 2, 30)
    with pytest.raises(ValueError, match="exactly two class folders, found 3"):
        image_folder_binary_task(tmp_path)


def test_image_folder_empty_class(tmp_path):
    _write_images(tmp_path / "a", 2, 10)
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match=str(tmp_path / "b")):
        image_folder_binary_task(tmp_path)


def test_image_folder_class_with_one_image_cannot_split(tmp_path):
    _write_images(tmp_path / "a", 3, 10)
    _write_images(tmp_path / "b", 1, 20)
    with pytest.raises(ValueError, match="at least 2"):
        image_folder_binary_task(tmp_path)


def test_binary_task_rejects_bad_labels():
    x = torch.zeros(3, 1, 4, 4)
    with pytest.raises(ValueError, match="train_y"):
        BinaryTask(x, torch.tensor([0, 1, 2]), x, torch.tensor([0, 1, 1]), ("a", "b"))
