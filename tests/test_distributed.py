"""Data-parallel training on CPU (gloo, 2 processes) against one process; batch sharding.

Classifier and paired training share the loop, so both run on two processes here.
"""

import os
import signal

import pandas as pd
import pytest
import torch
from torch import nn

from robustflow.data import load_digits
from robustflow.distributed import backend_for, shard_bounds
from robustflow.robustar import train_paired
from robustflow.training import (
    CHECKPOINT_NAME,
    TrainingPreempted,
    TrainSettings,
    check_execution_settings,
    train_classifier,
)
from tests.test_robustar import _model as _paired_model
from tests.test_robustar import _toy_data

torch.set_num_threads(1)


@pytest.mark.parametrize("n, world_size, expected", [
    (9, 2, [(0, 5), (5, 9)]),
    (10, 3, [(0, 4), (4, 7), (7, 10)]),
    (2, 2, [(0, 1), (1, 2)]),
    (64, 1, [(0, 64)]),
])
def test_shards_are_contiguous_balanced_and_cover_the_batch(n, world_size, expected):
    assert [shard_bounds(n, rank, world_size) for rank in range(world_size)] == expected


def test_bad_shard_arguments_are_named():
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(10, 2, 2)
    with pytest.raises(ValueError, match="world_size"):
        shard_bounds(10, 0, 0)
    assert backend_for("cuda") == "nccl" and backend_for("cpu") == "gloo"


def test_execution_settings_are_checked():
    with pytest.raises(ValueError, match="training.devices must be >= 1"):
        check_execution_settings(TrainSettings(devices=0), "cpu", 100)
    # 1257 images in batches of 64: the last batch holds 41, so 2 devices are fine, 50 are not.
    check_execution_settings(TrainSettings(devices=2, batch_size=64), "cpu", 1257)
    with pytest.raises(ValueError, match="last batch 1 of 129 images"):
        check_execution_settings(TrainSettings(devices=2, batch_size=64), "cpu", 129)


def _batchnorm_free_model():
    # SyncBatchNorm needs CUDA; without BatchNorm, 2 shards must give the one-process gradients.
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )


def _preempt_the_launcher_after_epoch_2(epoch, record):
    # Runs in rank 0's process: SIGTERM its parent, the launcher, as a scheduler would.
    if epoch == 2:
        os.kill(os.getppid(), signal.SIGTERM)


def test_two_gloo_processes_match_one_process_and_resume_after_preemption(tmp_path):
    data = load_digits(image_size=8)
    # 1257 train images in batches of 50: the last batch (7) splits 4/3, exercising the shard weights.
    base = dict(epochs=3, batch_size=50, lr=3e-3, crop_padding=1, flip=True, mixup_alpha=0.3, ema_decay=0.9)
    single = train_classifier(_batchnorm_free_model(), data, TrainSettings(**base), tmp_path / "one",
                              progress=False)
    # Epochs 1-2 on two processes, stopped by SIGTERM; epoch 3 resumes in one process (devices only
    # choose how a run is computed, so the checkpoint carries over). One launch keeps the test short.
    with pytest.raises(TrainingPreempted, match="data-parallel"):
        train_classifier(_batchnorm_free_model(), data, TrainSettings(**base, devices=2), tmp_path / "two",
                         progress=False, on_epoch_end=_preempt_the_launcher_after_epoch_2)
    checkpoint = torch.load(tmp_path / "two" / CHECKPOINT_NAME, weights_only=True)
    assert len(checkpoint["history"]) == 2 and len(checkpoint["rank_rng"]) == 2
    resumed = train_classifier(_batchnorm_free_model(), data, TrainSettings(**base), tmp_path / "two",
                               progress=False)

    columns = ["train_loss", "val_loss", "val_nll", "val_margin_mean", "ema_val_loss", "lr"]
    pd.testing.assert_frame_equal(resumed.history[columns], single.history[columns], check_exact=False,
                                  rtol=1e-5, atol=1e-6)  # measured: relative differences ~1e-8
    n_val = len(data.val_y)
    assert (resumed.history["val_top1"] - single.history["val_top1"]).abs().max() <= 1 / n_val + 1e-12
    for name, value in single.best_state.items():
        torch.testing.assert_close(resumed.best_state[name], value, rtol=1e-5, atol=1e-6)


def test_paired_training_on_two_gloo_processes_matches_one_process(tmp_path):
    data, masks = _toy_data()
    # 64 images in batches of 13: full batches split 7/6, the last (12) 6/6; each mask goes with its image.
    base = dict(epochs=2, batch_size=13, lr=1e-2, crop_padding=1, flip=True, ema_decay=0.9)
    paired = dict(pair_mode="other_background", reg_coeff=0.5, progress=False)
    single = train_paired(_paired_model(), data, masks, TrainSettings(**base), tmp_path / "one", **paired)
    two = train_paired(_paired_model(), data, masks, TrainSettings(**base, devices=2), tmp_path / "two", **paired)

    assert len(torch.load(tmp_path / "two" / CHECKPOINT_NAME, weights_only=True)["rank_rng"]) == 2
    columns = ["train_loss", "train_task_loss", "train_distance", "val_loss", "ema_val_loss", "lr"]
    pd.testing.assert_frame_equal(two.history[columns], single.history[columns], check_exact=False,
                                  rtol=1e-5, atol=1e-6)
    for name, value in single.best_state.items():
        torch.testing.assert_close(two.best_state[name], value, rtol=1e-5, atol=1e-6)
