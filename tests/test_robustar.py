"""Robustar paired training: the pairing, the regulariser, that training lowers the loss, and resume."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from robustflow.data import ImageSplits
from robustflow.robustar import CONSTANT_GRAY, paired_images, paired_loss, prediction_distance, train_paired
from robustflow.training import CHECKPOINT_NAME, TrainSettings


def _images_and_masks(n=6, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=generator)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[:, :, 2:5, 3:6] = True
    return images, masks


@pytest.mark.parametrize("mode", ["noise", "other_background", "constant"])
def test_pairing_replaces_exactly_the_background(mode):
    images, masks = _images_and_masks()
    paired = paired_images(images, masks, mode, torch.Generator().manual_seed(1))
    fg = masks.expand_as(images)
    assert torch.equal(paired[fg], images[fg])
    assert bool((paired[~fg] != images[~fg]).all())  # continuous random images: every replaced value differs
    if mode == "constant":
        assert bool((paired[~fg] == CONSTANT_GRAY).all())
    if mode == "other_background":
        # each image's background comes from one other image of the batch, pixel for pixel
        for i in range(len(images)):
            sources = [j for j in range(len(images)) if torch.equal(paired[i][~fg[i]], images[j][~fg[j]])]
            assert len(sources) == 1 and sources[0] != i


def test_pairing_is_deterministic_per_generator():
    images, masks = _images_and_masks()
    a = paired_images(images, masks, "noise", torch.Generator().manual_seed(5))
    b = paired_images(images, masks, "noise", torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_pairing_rejects_bad_arguments():
    images, masks = _images_and_masks()
    with pytest.raises(ValueError, match="pair_mode"):
        paired_images(images, masks, "blur", torch.Generator())
    with pytest.raises(ValueError, match="masks"):
        paired_images(images, masks.float(), "noise", torch.Generator())


def test_regulariser_is_zero_for_equal_predictions_and_matches_hand_value():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]])
    labels = torch.tensor([1, 2])
    ce = nn.CrossEntropyLoss()
    total, task, distance = paired_loss(logits, logits.clone(), labels, ce, reg_coeff=10.0)
    assert float(distance) == 0.0
    assert torch.allclose(total, ce(logits, labels))
    # two-class case by hand: softmax([0, 0]) = (.5, .5), softmax([ln 3, 0]) = (.75, .25) -> distance 2 * .25^2
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[torch.log(torch.tensor(3.0)), 0.0]])
    assert torch.allclose(prediction_distance(a, b), torch.tensor(0.125))
    total, task, _ = paired_loss(a, b, torch.tensor([0]), ce, reg_coeff=2.0)
    assert torch.allclose(task, 0.5 * (ce(a, torch.tensor([0])) + ce(b, torch.tensor([0]))))
    assert torch.allclose(total, task + 0.25)


def _toy_data(n=64, size=8, seed=0):
    """Class = the foreground's brightness; the background is noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 2
    images = (torch.rand(n, 3, size, size, generator=generator) * 255).to(torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.bool)
    masks[:, :, 2:6, 2:6] = True
    fg = torch.where(labels[:, None, None, None] == 1, 230, 20).to(torch.uint8).expand_as(images)
    images = torch.where(masks, fg, images)
    data = ImageSplits(train_x=images, train_y=labels, val_x=images[:16], val_y=labels[:16],
                       test_x=images[:16], test_y=labels[:16], classes=("dark", "bright"),
                       mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return data, masks


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_training_lowers_the_loss_and_is_deterministic(tmp_path):
    torch.set_num_threads(1)
    data, masks = _toy_data()
    settings = TrainSettings(epochs=4, batch_size=16, lr=1e-2, seed=3, crop_padding=1, flip=True)
    first = train_paired(_model(), data, masks, settings, tmp_path / "first", pair_mode="other_background",
                         reg_coeff=1.0, progress=False)
    history = first.history
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert set(["train_task_loss", "train_distance", "val_top1"]) <= set(history.columns)
    second = train_paired(_model(), data, masks, settings, tmp_path / "second", pair_mode="other_background",
                          reg_coeff=1.0, progress=False)
    assert history["train_loss"].tolist() == second.history["train_loss"].tolist()
    for key, value in first.best_state.items():
        assert torch.equal(value, second.best_state[key])


def test_reg_coeff_zero_is_the_task_loss_alone(tmp_path):
    data, masks = _toy_data()
    settings = TrainSettings(epochs=1, batch_size=16, lr=1e-2, seed=0)
    history = train_paired(_model(), data, masks, settings, tmp_path, pair_mode="noise", reg_coeff=0.0,
                           progress=False).history
    assert history["train_loss"].iloc[0] == pytest.approx(history["train_task_loss"].iloc[0])
    assert history["train_distance"].iloc[0] > 0


def test_train_paired_rejects_bad_arguments(tmp_path):
    data, masks = _toy_data()
    with pytest.raises(ValueError, match="mixup"):
        train_paired(_model(), data, masks, TrainSettings(mixup_alpha=0.2), tmp_path)
    with pytest.raises(ValueError, match="reg_coeff"):
        train_paired(_model(), data, masks, TrainSettings(), tmp_path, reg_coeff=-1)
    with pytest.raises(ValueError, match="train_masks"):
        train_paired(_model(), data, masks[:3], TrainSettings(), tmp_path)
    assert not (tmp_path / CHECKPOINT_NAME).exists()  # rejected before any training


class Interrupt(Exception):
    pass


def test_interrupted_paired_run_resumes_to_the_uninterrupted_history(tmp_path):
    torch.set_num_threads(1)
    data, masks = _toy_data()
    settings = TrainSettings(epochs=4, batch_size=16, lr=1e-2, seed=3, crop_padding=1, flip=True, ema_decay=0.9)
    paired = dict(pair_mode="other_background", reg_coeff=0.5, progress=False)
    straight = train_paired(_model(), data, masks, settings, tmp_path / "straight", **paired)

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_paired(_model(), data, masks, settings, tmp_path / "resumed", on_epoch_end=stop_after_two, **paired)
    assert len(torch.load(tmp_path / "resumed" / CHECKPOINT_NAME, weights_only=True)["history"]) == 2
    epochs_run = []
    resumed = train_paired(_model(), data, masks, settings, tmp_path / "resumed",
                           on_epoch_end=lambda epoch, record: epochs_run.append(epoch), **paired)
    assert epochs_run == [3, 4]  # it resumed, not restarted
    pd.testing.assert_frame_equal(straight.history, resumed.history, check_exact=True)
    assert {"train_task_loss", "train_distance", "ema_val_top1"} <= set(resumed.history.columns)
    for best in ("best_state", "ema_best_state"):
        for key, value in getattr(straight, best).items():
            assert torch.equal(value, getattr(resumed, best)[key]), (best, key)


def test_checkpoint_of_another_reg_coeff_is_not_resumed(tmp_path):
    data, masks = _toy_data()
    settings = TrainSettings(epochs=2, batch_size=16, lr=1e-2, seed=0)

    def stop_after_one(epoch, record):
        raise Interrupt

    with pytest.raises(Interrupt):
        train_paired(_model(), data, masks, settings, tmp_path / "changed", reg_coeff=1.0, progress=False,
                     on_epoch_end=stop_after_one)
    # The settings are the same: only the objective's reg_coeff tells the runs apart.
    with pytest.warns(UserWarning, match="other settings or objective"):
        changed = train_paired(_model(), data, masks, settings, tmp_path / "changed", reg_coeff=0.5,
                               progress=False)
    fresh = train_paired(_model(), data, masks, settings, tmp_path / "fresh", reg_coeff=0.5, progress=False)
    pd.testing.assert_frame_equal(changed.history, fresh.history, check_exact=True)
