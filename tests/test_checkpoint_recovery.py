"""Damaged checkpoints are set aside (renamed, kept, named in a warning) and the run still ends as one run.

A partial run leaves last.pt (epoch 3) and previous.pt (epoch 2); the rerun after damage resumes
from previous.pt, or from scratch when both are damaged, and must give the uninterrupted history.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from datetime import datetime
from functools import partial
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustflow import training
from robustflow.data import load_digits
from robustflow.models import create_model
from robustflow.robustar import train_paired
from robustflow.training import (
    CHECKPOINT_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    CheckpointError,
    TrainSettings,
    UnreadableCheckpointWarning,
    train_classifier,
)
from tests.test_robustar import _model as _paired_model
from tests.test_robustar import _toy_data
from tests.test_safe_loading import CreatesFileWhenUnpickled

torch.set_num_threads(1)
EPOCHS = 4
STOP_AFTER = 3  # the partial run's last.pt holds epoch 3, its previous.pt epoch 2
SETTINGS = TrainSettings(epochs=EPOCHS, batch_size=64, lr=1e-2, crop_padding=1, flip=True, ema_decay=0.9,
                         mixup_alpha=0.2, seed=0)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=8)


def _model(data):
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=data.num_classes, img_size=data.image_size, features=(4, 8),
                        dropout=0.1)


def _train(data, folder: Path, stop_after: int | None = None, settings: TrainSettings = SETTINGS):
    """Train (from the seed's fresh model, as a new process would); returns the result and the epochs run."""
    epochs_run = []

    def on_epoch_end(epoch, record):
        epochs_run.append(epoch)
        if epoch == stop_after:
            raise Interrupt

    if stop_after is None:
        return train_classifier(_model(data), data, settings, folder, progress=False, on_epoch_end=on_epoch_end), \
            epochs_run
    with pytest.raises(Interrupt):
        train_classifier(_model(data), data, settings, folder, progress=False, on_epoch_end=on_epoch_end)
    return None, epochs_run


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def straight(digits, tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight")
    result, _ = _train(digits, folder)
    return result, _load(folder / CHECKPOINT_NAME)


@pytest.fixture(scope="module")
def partial_run(digits, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("partial")
    _train(digits, folder, stop_after=STOP_AFTER)
    assert len(_load(folder / CHECKPOINT_NAME)["history"]) == STOP_AFTER
    assert len(_load(folder / PREVIOUS_CHECKPOINT_NAME)["history"]) == STOP_AFTER - 1  # the rotated one
    return folder


@pytest.fixture
def run_dir(partial_run, tmp_path) -> Path:
    folder = tmp_path / "run"
    shutil.copytree(partial_run, folder)
    return folder


# ----------------------------------------------------------------------------- damage


def _overwrite(path: Path, seed: int | None = None, offset: int | None = None) -> None:
    """XOR 1-4 bytes (each really changes) at a seeded random offset, or at `offset`."""
    raw = bytearray(path.read_bytes())
    rng = random.Random(seed)
    count = 1 if offset is not None else rng.randint(1, 4)
    start = offset % len(raw) if offset is not None else rng.randrange(len(raw) - count + 1)
    for index in range(start, start + count):
        raw[index] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(raw))


def _truncate(path: Path, seed: int | None = None, length: int | None = None) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: length if length is not None else random.Random(seed).randrange(len(raw))])


def _replace_with_text(path: Path) -> None:
    path.write_bytes(b"not a checkpoint\n")


DAMAGE = [
    *[pytest.param(partial(_overwrite, seed=seed), id=f"overwrite-seed{seed}") for seed in range(4)],
    pytest.param(partial(_overwrite, offset=0), id="overwrite-first-byte"),
    pytest.param(partial(_overwrite, offset=-1), id="overwrite-last-byte"),
    # The seal (the zip comment with the digest, 82 bytes) and the zip end record before it: bytes
    # that no zip CRC covers and that torch.load does not need.
    pytest.param(partial(_overwrite, offset=-82), id="overwrite-seal-prefix"),
    pytest.param(partial(_overwrite, offset=-84), id="overwrite-comment-length"),
    pytest.param(partial(_overwrite, offset=-104), id="overwrite-end-record-signature"),
    *[pytest.param(partial(_truncate, seed=seed), id=f"truncate-seed{seed}") for seed in range(3)],
    pytest.param(partial(_truncate, length=0), id="truncate-empty"),
    pytest.param(_replace_with_text, id="not-a-zip"),
]


def _rewrite(path: Path, change) -> None:
    """Rewrite the checkpoint at `path` with `change` applied: intact bytes, unusable contents."""
    checkpoint = _load(path)
    change(checkpoint)
    torch.save(checkpoint, path)


def _wrong_shape(checkpoint: dict, key: str) -> None:
    name = list(checkpoint[key])[-1]  # the last tensor: load_state_dict has copied the others by then
    checkpoint[key][name] = torch.zeros(3)


UNUSABLE = [
    pytest.param(lambda checkpoint: checkpoint.pop("optimizer"), id="missing-key"),
    pytest.param(partial(_wrong_shape, key="model"), id="model-tensor-of-wrong-shape"),
    pytest.param(partial(_wrong_shape, key="ema"), id="ema-tensor-of-wrong-shape"),
    pytest.param(lambda checkpoint: checkpoint["history"].pop(), id="history-shorter-than-schedule"),
    pytest.param(lambda checkpoint: checkpoint["history"][0].update(epoch=2), id="history-epochs-out-of-order"),
    pytest.param(lambda checkpoint: checkpoint["best"].update(epoch=EPOCHS + 1), id="best-epoch-beyond-history"),
]


# ----------------------------------------------------------------------------- checks


def _assert_set_aside(path: Path, damaged: bytes, messages: list[str]) -> Path:
    """`path` was renamed beside itself with its damaged bytes kept, and a warning names both paths."""
    moved = list(path.parent.glob(f"{path.name}.unreadable-*"))
    assert len(moved) == 1, moved
    assert moved[0].read_bytes() == damaged
    assert any(str(path) in message and str(moved[0]) in message and "cannot be used (" in message
               for message in messages), messages
    return moved[0]


def _assert_finishes_as_straight(result, folder: Path, straight) -> None:
    reference, reference_checkpoint = straight
    pd.testing.assert_frame_equal(result.history, reference.history, check_exact=True)
    assert result.best_epoch == reference.best_epoch
    for name, value in reference.best_state.items():
        assert torch.equal(value, result.best_state[name]), name
    final = _load(folder / CHECKPOINT_NAME)
    for key in ("model", "ema"):
        for name, value in reference_checkpoint[key].items():
            assert torch.equal(value, final[key][name]), (key, name)
    assert len(_load(folder / PREVIOUS_CHECKPOINT_NAME)["history"]) == EPOCHS - 1
    assert not list(folder.glob(".*.tmp"))


def _rerun(digits, folder: Path):
    with pytest.warns(UnreadableCheckpointWarning) as caught:
        result, epochs_run = _train(digits, folder)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnreadableCheckpointWarning)]
    return result, epochs_run, messages


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_last_checkpoint_is_set_aside_and_the_run_resumes_from_the_previous(digits, straight, run_dir,
                                                                                     damage):
    last = run_dir / CHECKPOINT_NAME
    damage(last)
    damaged = last.read_bytes()
    result, epochs_run, messages = _rerun(digits, run_dir)
    _assert_set_aside(last, damaged, messages)
    assert epochs_run == [STOP_AFTER, EPOCHS]  # resumed from previous.pt (epoch 2), not from scratch
    assert any(f"resuming from {run_dir / PREVIOUS_CHECKPOINT_NAME}" in message for message in messages)
    _assert_finishes_as_straight(result, run_dir, straight)


@pytest.mark.parametrize("change", UNUSABLE)
def test_intact_checkpoint_that_cannot_be_used_is_set_aside(digits, straight, run_dir, change):
    last = run_dir / CHECKPOINT_NAME
    _rewrite(last, change)
    damaged = last.read_bytes()
    result, epochs_run, messages = _rerun(digits, run_dir)
    _assert_set_aside(last, damaged, messages)
    assert epochs_run == [STOP_AFTER, EPOCHS]
    _assert_finishes_as_straight(result, run_dir, straight)


@pytest.mark.parametrize("damage_last, damage_previous", [
    pytest.param(partial(_truncate, seed=7), partial(_overwrite, seed=7), id="truncated-and-overwritten"),
    # Both fail halfway through loading (model, optimizer and schedule loaded, then the EMA does not
    # fit): the fresh run must start from the caller's untouched model and parts.
    pytest.param(partial(_rewrite, change=partial(_wrong_shape, key="ema")),
                 partial(_rewrite, change=partial(_wrong_shape, key="ema")), id="both-fail-halfway"),
])
def test_both_checkpoints_damaged_trains_from_scratch_to_the_same_history(digits, straight, run_dir, damage_last,
                                                                          damage_previous):
    last, previous = run_dir / CHECKPOINT_NAME, run_dir / PREVIOUS_CHECKPOINT_NAME
    damage_last(last)
    damage_previous(previous)
    damaged_last, damaged_previous = last.read_bytes(), previous.read_bytes()
    result, epochs_run, messages = _rerun(digits, run_dir)
    _assert_set_aside(last, damaged_last, messages)
    _assert_set_aside(previous, damaged_previous, messages)
    assert any("training from scratch" in message for message in messages)
    assert epochs_run == list(range(1, EPOCHS + 1))
    _assert_finishes_as_straight(result, run_dir, straight)


def test_set_aside_never_overwrites_an_earlier_one(digits, run_dir, monkeypatch):
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2024, 5, 1, 12, 0, 0, tzinfo=tz)

    monkeypatch.setattr(training, "datetime", FrozenClock)  # both set asides get the same timestamp
    last = run_dir / CHECKPOINT_NAME
    kept = []
    for length in (100, 200):
        _truncate(last, length=length)
        kept.append(last.read_bytes())
        with pytest.warns(UnreadableCheckpointWarning):
            _train(digits, run_dir)  # resumes from previous.pt, ends with a fresh last.pt
    first = run_dir / f"{CHECKPOINT_NAME}.unreadable-20240501T120000Z"
    second = run_dir / f"{CHECKPOINT_NAME}.unreadable-20240501T120000Z-2"
    assert [first.read_bytes(), second.read_bytes()] == kept


def test_unsafe_checkpoint_is_still_refused_even_with_a_readable_previous(digits, run_dir, tmp_path):
    last = run_dir / CHECKPOINT_NAME
    marker = tmp_path / "payload-ran"
    torch.save({"settings": CreatesFileWhenUnpickled(marker), "history": []}, last)
    with pytest.raises(CheckpointError, match="refused to unpickle") as refused:
        _train(digits, run_dir)
    assert str(last) in str(refused.value)
    assert not marker.exists()
    assert last.exists() and not list(run_dir.glob("*.unreadable-*"))  # refused, not set aside


def test_checkpoint_of_other_settings_is_ignored_not_set_aside(digits, run_dir):
    other = dataclasses.replace(SETTINGS, lr=1e-3, epochs=2)
    with pytest.warns(UserWarning, match="other settings") as caught:
        result, epochs_run = _train(digits, run_dir, settings=other)
    assert not [w for w in caught if issubclass(w.category, UnreadableCheckpointWarning)]
    assert epochs_run == [1, 2] and not list(run_dir.glob("*.unreadable-*"))
    fresh, _ = _train(digits, run_dir.parent / "fresh", settings=other)
    pd.testing.assert_frame_equal(result.history, fresh.history, check_exact=True)


def test_paired_training_recovers_from_a_damaged_checkpoint(tmp_path):
    data, masks = _toy_data()
    settings = TrainSettings(epochs=3, batch_size=16, lr=1e-2, seed=3, crop_padding=1, flip=True, ema_decay=0.9)
    paired = {"pair_mode": "other_background", "reg_coeff": 0.5, "progress": False}
    straight = train_paired(_paired_model(), data, masks, settings, tmp_path / "straight", **paired)

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_paired(_paired_model(), data, masks, settings, tmp_path / "resumed", on_epoch_end=stop_after_two,
                     **paired)
    last = tmp_path / "resumed" / CHECKPOINT_NAME
    _overwrite(last, seed=11)
    damaged = last.read_bytes()
    epochs_run = []
    with pytest.warns(UnreadableCheckpointWarning) as caught:
        resumed = train_paired(_paired_model(), data, masks, settings, tmp_path / "resumed",
                               on_epoch_end=lambda epoch, record: epochs_run.append(epoch), **paired)
    _assert_set_aside(last, damaged, [str(w.message) for w in caught])
    assert epochs_run == [2, 3]  # from previous.pt (epoch 1)
    pd.testing.assert_frame_equal(straight.history, resumed.history, check_exact=True)
    for key, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key
