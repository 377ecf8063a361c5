"""The backgrounds set: variations pixel-exact by their definitions, determinism, the real layout's loader."""

from __future__ import annotations

import pytest
import torch

from robustflow.data import DatasetNotFoundError
from robustflow.data.backgrounds import (
    VARIATIONS,
    bounding_boxes,
    box_masks,
    fill_box_with_tiles,
    generate_backgrounds_set,
    load_backgrounds_set,
    load_bg_challenge,
    save_backgrounds_set,
    striped_textures,
)
from tests.fixtures import write_bg_challenge_fixture


@pytest.fixture(scope="module")
def generated():
    return generate_backgrounds_set(seed=3, n_classes=4, image_size=20, digit_size=12)


def test_generated_shapes_and_masks(generated):
    n = len(generated.test["original"])
    assert set(generated.test) == set(VARIATIONS)
    for variation in VARIATIONS:
        assert generated.test[variation].shape == (n, 3, 20, 20)
        assert generated.test[variation].dtype == torch.uint8
        assert torch.equal(generated.test_labels[variation], generated.train.test_y)
    assert generated.test_masks.shape == (n, 1, 20, 20) and generated.test_masks.dtype == torch.bool
    assert generated.train_masks.shape == (len(generated.train.train_x), 1, 20, 20)
    # every image has a foreground and a background
    assert bool(generated.test_masks.flatten(1).any(1).all())
    assert bool((~generated.test_masks).flatten(1).any(1).all())
    assert torch.equal(generated.mixed_rand_train.train_y, generated.train.train_y)


def test_variations_follow_their_definitions(generated):
    test, masks = generated.test, generated.test_masks
    fg = masks.expand_as(test["original"])
    original = test["original"]
    boxes = bounding_boxes(masks)
    in_box = box_masks(boxes, 20, 20).expand_as(original)
    # only_fg: foreground kept, background exactly black
    assert torch.equal(test["only_fg"][fg], original[fg])
    assert int(test["only_fg"][~fg].max()) == 0
    # no_fg: foreground pixels black, everything else as the original
    assert int(test["no_fg"][fg].max()) == 0
    assert torch.equal(test["no_fg"][~fg], original[~fg])
    # only_bg_b: the whole bounding box black, the rest untouched
    assert int(test["only_bg_b"][in_box].max()) == 0
    assert torch.equal(test["only_bg_b"][~in_box], original[~in_box])
    # only_bg_t: outside the box untouched; inside, each pixel copies a pixel of its own row outside the box
    only_bg_t = test["only_bg_t"]
    assert torch.equal(only_bg_t[~in_box], original[~in_box])
    for i in range(0, len(original), 37):
        y0, y1, x0, x1 = boxes[i].tolist()
        outside = [x for x in range(20) if not x0 <= x < x1]
        for y in range(y0, y1):
            for x in range(x0, x1):
                assert any(torch.equal(only_bg_t[i, :, y, x], original[i, :, y, s]) for s in outside)
    # mixed_*: foreground kept exactly
    for name in ("mixed_same", "mixed_rand", "mixed_next"):
        assert torch.equal(test[name][fg], original[fg])


def test_mixed_backgrounds_come_from_the_stated_class(generated):
    labels = generated.test_labels["original"]
    classes = generated.background_classes
    assert torch.equal(classes["mixed_same"], labels)
    assert torch.equal(classes["mixed_next"], (labels + 1) % 4)
    # the background pixels of a variation are those of a texture of its background class: the
    # texture of another class has another colour, so re-rendering with a wrong class must differ
    for name in ("mixed_same", "mixed_next", "mixed_rand"):
        bg = ~generated.test_masks[:, 0]
        image = generated.test[name].double()
        mean_colour = (image * bg[:, None]).sum((2, 3)) / bg.sum((1, 2))[:, None]
        reference = striped_textures(torch.arange(4), 4, 20, torch.Generator().manual_seed(0), noise=0).double()
        distances = torch.cdist(mean_colour, reference.mean((2, 3)))
        assert torch.equal(distances.argmin(1), classes[name])


def test_training_backgrounds_follow_the_correlation():
    correlated = generate_backgrounds_set(seed=0, n_classes=5, correlation=1.0, image_size=20, digit_size=12)
    assert torch.equal(correlated.background_classes["train"], correlated.train.train_y)
    loose = generate_backgrounds_set(seed=0, n_classes=5, correlation=0.5, image_size=20, digit_size=12)
    agreement = (loose.background_classes["train"] == loose.train.train_y).double().mean()
    assert 0.5 < float(agreement) < 0.7  # 0.5 + 0.5 / 5 = 0.6 expected


def test_generation_is_deterministic_per_seed(generated):
    again = generate_backgrounds_set(seed=3, n_classes=4, image_size=20, digit_size=12)
    other = generate_backgrounds_set(seed=4, n_classes=4, image_size=20, digit_size=12)
    for variation in VARIATIONS:
        assert torch.equal(again.test[variation], generated.test[variation])
    assert torch.equal(again.train.train_x, generated.train.train_x)
    assert not torch.equal(other.train.train_x, generated.train.train_x)


def test_save_load_round_trip(generated, tmp_path):
    path = tmp_path / "set.pt"
    save_backgrounds_set(generated, path)
    loaded = load_backgrounds_set(path)
    assert torch.equal(loaded.test["only_bg_t"], generated.test["only_bg_t"])
    assert torch.equal(loaded.train_masks, generated.train_masks)
    assert torch.equal(loaded.mixed_rand_train.val_x, generated.mixed_rand_train.val_x)
    assert loaded.train.mean == generated.train.mean
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_backgrounds_set(tmp_path / "missing.pt")


def test_tiling_by_hand():
    image = torch.arange(6, dtype=torch.uint8).repeat(1, 1, 2, 1)  # rows 0 1 2 3 4 5
    boxes = torch.tensor([[0, 2, 2, 5]])  # columns 2..4; left room 2 >= right room 1 -> tile columns 0, 1
    tiled = fill_box_with_tiles(image, boxes)
    assert tiled[0, 0, 0].tolist() == [0, 1, 0, 1, 0, 5]
    boxes = torch.tensor([[0, 2, 0, 2]])  # no room on the left: tile columns 2, 3 from the right
    assert fill_box_with_tiles(image, boxes)[0, 0, 1].tolist() == [2, 3, 2, 3, 4, 5]


def test_bad_arguments():
    with pytest.raises(ValueError, match="correlation"):
        generate_backgrounds_set(seed=0, correlation=1.5)
    with pytest.raises(ValueError, match="digit_size"):
        generate_backgrounds_set(seed=0, image_size=16, digit_size=16)


# ----------------------------------------------------------------------------- the real layout

def test_bg_challenge_loader_reads_the_release_layout(tmp_path):
    write_bg_challenge_fixture(tmp_path, train_splits=False)
    data = load_bg_challenge(tmp_path, image_size=8, val_fraction=0.34)
    assert data.classes == ("dog", "bird")
    assert set(data.test) == set(VARIATIONS)
    assert data.test["original"].shape == (6, 3, 8, 8)
    assert data.test_labels["mixed_rand"].tolist() == [0, 0, 0, 1, 1, 1]
    assert len(data.train.train_x) + len(data.train.val_x) == 6
    # the images are flat colours, so resizing keeps their value (JPEG may shift it by a little)
    assert abs(int(data.test["original"][4, 0, 3, 3]) - 50) <= 3
    assert data.test_masks.shape == (6, 1, 8, 8)
    assert bool(data.test_masks[:, :, :4].all()) and not bool(data.test_masks[:, :, 4:].any())
    assert data.train_masks is None and data.mixed_rand_train is None


def test_bg_challenge_loader_reads_the_training_splits_of_mixed_rand_and_paired_training(tmp_path):
    write_bg_challenge_fixture(tmp_path)
    data = load_bg_challenge(tmp_path, image_size=8, val_fraction=0.34)
    assert data.train_masks.shape == (len(data.train.train_x), 1, 8, 8)
    assert bool(data.train_masks[:, :, :4].all()) and not bool(data.train_masks[:, :, 4:].any())
    assert len(data.mixed_rand_train.train_x) == len(data.train.train_x)


def test_bg_challenge_loader_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="MadryLab/backgrounds_challenge"):
        load_bg_challenge(tmp_path / "nowhere")
    write_bg_challenge_fixture(tmp_path, variations=("original", "only_fg"))
    with pytest.raises(DatasetNotFoundError, match="only_bg_b"):
        load_bg_challenge(tmp_path, image_size=8, val_fraction=0.34)
    (tmp_path / "fg_mask" / "val" / "01_bird" / "n01_2.npy").unlink()
    with pytest.raises(DatasetNotFoundError, match="n01_2.npy"):
        load_bg_challenge(tmp_path, image_size=8, val_fraction=0.34, variations=("original", "only_fg"))
