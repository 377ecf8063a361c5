"""Training loop: learning, determinism, exact resume, EMA, divergence."""

import pandas as pd
import pytest
import torch

from robustflow.data import load_digits
from robustflow.models import create_model
from robustflow.training import (
    CHECKPOINT_NAME,
    ModelEma,
    TrainingDivergedError,
    TrainSettings,
    is_better,
    train_classifier,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=16)


def _model(data, seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=data.num_classes, img_size=data.image_size,
                        features=(8, 16), dropout=0.1)


def _settings(**overrides):
    base = dict(epochs=3, batch_size=32, lr=1e-2, crop_padding=1, flip=True, seed=0)
    return TrainSettings(**{**base, **overrides})


def test_training_lowers_loss_and_learns(digits, tmp_path):
    result = train_classifier(_model(digits), digits, _settings(epochs=5), tmp_path, progress=False)
    history = result.history
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert history["val_top1"].max() > 0.5  # 10 classes: chance is 0.1
    assert result.best_epoch == int(history.loc[history["val_top1"].idxmax(), "epoch"])
    assert {"val_margin_snr", "val_normalized_margin", "val_ece", "lr"} <= set(history.columns)


def test_same_seed_gives_identical_history(digits, tmp_path):
    first = train_classifier(_model(digits), digits, _settings(epochs=2), tmp_path / "a", progress=False)
    second = train_classifier(_model(digits), digits, _settings(epochs=2), tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(first.history, second.history)
    other = train_classifier(_model(digits, seed=1), digits, _settings(epochs=2, seed=1), tmp_path / "c",
                             progress=False)
    assert not first.history["train_loss"].equals(other.history["train_loss"])


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("ema_decay, mixup_alpha", [(None, 0.0), (0.9, 0.4)])
def test_resume_gives_the_uninterrupted_history(digits, tmp_path, ema_decay, mixup_alpha):
    settings = _settings(epochs=4, ema_decay=ema_decay, mixup_alpha=mixup_alpha)
    straight = train_classifier(_model(digits), digits, settings, tmp_path / "straight", progress=False)

    def stop_after_two(epoch, record):
        if epoch == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_classifier(_model(digits), digits, settings, tmp_path / "resumed", progress=False,
                         on_epoch_end=stop_after_two)
    assert (tmp_path / "resumed" / CHECKPOINT_NAME).exists()
    # A fresh process would build the model again from the seed; resume replaces its weights.
    resumed = train_classifier(_model(digits), digits, settings, tmp_path / "resumed", progress=False)
    pd.testing.assert_frame_equal(straight.history, resumed.history)
    for key, value in straight.best_state.items():
        assert torch.equal(value, resumed.best_state[key]), key


def test_checkpoint_of_other_settings_is_not_resumed(digits, tmp_path):
    train_classifier(_model(digits), digits, _settings(epochs=1), tmp_path / "changed", progress=False)
    with pytest.warns(UserWarning, match="other settings"):
        changed = train_classifier(_model(digits), digits, _settings(epochs=2, lr=1e-3), tmp_path / "changed",
                                   progress=False)
    fresh = train_classifier(_model(digits), digits, _settings(epochs=2, lr=1e-3), tmp_path / "fresh",
                             progress=False)
    pd.testing.assert_frame_equal(changed.history, fresh.history)


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    settings = _settings(epochs=3)
    poisoned = {"done": False}

    def poison_after_first_epoch(epoch, record):
        if not poisoned["done"]:
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
            poisoned["done"] = True

    model = _model(digits)
    with pytest.raises(TrainingDivergedError, match="epoch 2"):
        train_classifier(model, digits, settings, tmp_path, progress=False, on_epoch_end=poison_after_first_epoch)
    checkpoint = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert len(checkpoint["history"]) == 1
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_ema_tracks_the_moving_average():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = ModelEma(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    ema.update(model)
    # 0 -> 0.5*0 + 0.5*1 = 0.5 -> 0.5*0.5 + 0.5*1 = 0.75
    assert torch.allclose(ema.module.weight, torch.full((1, 2), 0.75))


def test_ema_run_records_ema_validation(digits, tmp_path):
    result = train_classifier(_model(digits), digits, _settings(epochs=2, ema_decay=0.9), tmp_path,
                              progress=False)
    assert "ema_val_top1" in result.history and result.ema_best_state is not None


def test_model_selection_breaks_top1_ties_by_validation_loss():
    best = {"top1": 0.9, "loss": 0.5}
    assert is_better({"top1": 0.95, "loss": 0.9}, best)  # top-1 decides first
    assert not is_better({"top1": 0.85, "loss": 0.1}, best)
    assert is_better({"top1": 0.9, "loss": 0.4}, best)  # a tie: the lower loss wins
    assert not is_better({"top1": 0.9, "loss": 0.5}, best)  # a full tie keeps the earlier epoch
    assert is_better({"top1": 0.9, "loss": 9.0}, {"top1": 0.9})  # checkpoints from before the loss was kept
