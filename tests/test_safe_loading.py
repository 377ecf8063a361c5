"""Checkpoints load with weights_only=True: a tampered file is refused, never unpickled."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustflow.data import load_digits
from robustflow.models import create_model
from robustflow.robustar import train_paired
from robustflow.training import CHECKPOINT_NAME, CheckpointError, TrainSettings, train_classifier
from tests.test_robustar import _model as _paired_model
from tests.test_robustar import _toy_data

torch.set_num_threads(1)


class CreatesFileWhenUnpickled:
    """A pickle payload: unpickling it calls open(path, "w"), which creates `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def _digits_model(data):
    torch.manual_seed(0)
    return create_model("small_cnn", num_classes=data.num_classes, img_size=data.image_size, features=(4, 8))


def test_a_checkpoint_that_would_run_code_is_refused_and_named(tmp_path):
    data = load_digits(image_size=8)
    marker = tmp_path / "payload-ran"
    checkpoint = tmp_path / "run" / CHECKPOINT_NAME
    checkpoint.parent.mkdir()
    torch.save({"settings": CreatesFileWhenUnpickled(marker), "history": []}, checkpoint)

    with pytest.raises(CheckpointError, match="refused to unpickle") as refused:
        train_classifier(_digits_model(data), data, TrainSettings(epochs=1), checkpoint.parent, progress=False)
    assert str(checkpoint) in str(refused.value)
    assert not marker.exists(), "the checkpoint's pickle ran code"
    assert checkpoint.exists()  # refused, not silently replaced by a fresh run

    # The payload is live: an unsafe load would have run it.
    torch.load(checkpoint, weights_only=False)
    assert marker.exists()


def test_checkpoints_hold_only_tensors_and_plain_values(tmp_path):
    data = load_digits(image_size=8)
    settings = TrainSettings(epochs=1, ema_decay=0.9, mixup_alpha=0.2, loss_params={}, crop_padding=1)
    train_classifier(_digits_model(data), data, settings, tmp_path / "classifier", progress=False)
    toy, masks = _toy_data()
    train_paired(_paired_model(), toy, masks, TrainSettings(epochs=1, batch_size=16, ema_decay=0.9),
                 tmp_path / "paired", reg_coeff=0.5, progress=False)
    for run in ("classifier", "paired"):
        checkpoint = torch.load(tmp_path / run / CHECKPOINT_NAME, weights_only=True)
        for row in checkpoint["history"]:
            assert all(type(value) in (int, float) for value in row.values()), row  # no numpy scalars
        assert isinstance(checkpoint["generator"], torch.Tensor)
    assert checkpoint["objective"] == {"name": "paired", "pair_mode": "noise", "reg_coeff": 0.5}
