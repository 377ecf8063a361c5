"""Preemption: SIGTERM stops between steps, kill -9 leaves no broken checkpoint, reruns end exactly as one run.

Classifier and paired training share the loop; both are killed here.
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustflow.data import load_digits
from robustflow.models import create_model
from robustflow.robustar import train_paired
from robustflow.training import CHECKPOINT_NAME, TrainingPreempted, TrainSettings, train_classifier
from tests.test_robustar import _model as _paired_model
from tests.test_robustar import _toy_data

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")
EPOCHS = 10
SETTINGS = dict(epochs=EPOCHS, batch_size=64, lr=1e-2, crop_padding=1, flip=True, ema_decay=0.9, mixup_alpha=0.2,
                seed=0)

# One training job as a scheduler runs it; prints when training starts and after every epoch.
CHILD = f"""
import sys, torch
torch.set_num_threads(1)
from robustflow.data import load_digits
from robustflow.models import create_model
from robustflow.training import TrainSettings, train_classifier
data = load_digits(image_size=16)
torch.manual_seed(0)
model = create_model("small_cnn", num_classes=10, img_size=16, features=(8, 16), dropout=0.1)
print("TRAINING", flush=True)
train_classifier(model, data, TrainSettings(**{SETTINGS!r}), sys.argv[1], progress=False,
                 on_epoch_end=lambda epoch, record: print("EPOCH", epoch, flush=True))
print("DONE", flush=True)
"""

PAIRED_EPOCHS = 8
PAIRED_SETTINGS = dict(epochs=PAIRED_EPOCHS, batch_size=32, lr=1e-2, crop_padding=1, flip=True, ema_decay=0.9,
                       seed=0)
PAIRED = dict(pair_mode="other_background", reg_coeff=0.5)
PAIRED_DATA = dict(n=2048, size=8)  # epochs of ~0.1 s: long enough for a kill to land mid-run

# The same job for paired training (the toy data and model of tests/test_robustar.py).
PAIRED_CHILD = f"""
import sys, torch
torch.set_num_threads(1)
from robustflow.robustar import train_paired
from robustflow.training import TrainSettings
from tests.test_robustar import _model, _toy_data
data, masks = _toy_data(**{PAIRED_DATA!r})
print("TRAINING", flush=True)
train_paired(_model(), data, masks, TrainSettings(**{PAIRED_SETTINGS!r}), sys.argv[1], progress=False,
             on_epoch_end=lambda epoch, record: print("EPOCH", epoch, flush=True), **{PAIRED!r})
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def digits():
    return load_digits(image_size=16)


def _model(seed=0):
    torch.manual_seed(seed)
    return create_model("small_cnn", num_classes=10, img_size=16, features=(8, 16), dropout=0.1)


def _start_child(checkpoint_dir: Path, script: str = CHILD) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(ROOT)])}  # ROOT: the paired child imports tests
    return subprocess.Popen([sys.executable, "-c", script, str(checkpoint_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"child ended before printing {prefix!r}: {process.wait()} {process.stderr.read()}")


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_history(actual: list[dict], expected: list[dict]) -> None:
    # Frames, not lists of dicts: NaN metrics (output_ratio of signed logits) must compare equal.
    pd.testing.assert_frame_equal(pd.DataFrame(actual), pd.DataFrame(expected), check_exact=True)


class EpochClock:
    """An on_epoch_end that times the epochs of an in-process reference run."""

    def __init__(self):
        self.times = [time.monotonic()]

    def __call__(self, epoch, record):
        self.times.append(time.monotonic())

    def median(self) -> float:
        return sorted(b - a for a, b in zip(self.times, self.times[1:]))[(len(self.times) - 1) // 2]


def test_random_kills_and_reruns_end_with_the_uninterrupted_run(digits, tmp_path):
    clock = EpochClock()
    train_classifier(_model(), digits, TrainSettings(**SETTINGS), tmp_path / "straight", progress=False,
                     on_epoch_end=clock)
    reference = _load(tmp_path / "straight" / CHECKPOINT_NAME)
    signals = [signal.SIGTERM, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL, signal.SIGTERM]
    anchors = ["TRAINING", "EPOCH", "TRAINING", "EPOCH", "TRAINING"]
    # At most 3 x 1 + 2 x 2 = 7 < EPOCHS epochs complete, so every kill lands on a running job.
    _kill_rerun_and_compare(CHILD, tmp_path / "killed", reference, clock.median(), signals, anchors)


def test_random_kills_of_paired_training_and_reruns_end_with_the_uninterrupted_run(tmp_path):
    data, masks = _toy_data(**PAIRED_DATA)
    clock = EpochClock()
    train_paired(_paired_model(), data, masks, TrainSettings(**PAIRED_SETTINGS), tmp_path / "straight",
                 progress=False, on_epoch_end=clock, **PAIRED)
    reference = _load(tmp_path / "straight" / CHECKPOINT_NAME)
    signals = [signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
    anchors = ["TRAINING", "EPOCH", "EPOCH"]
    # Three kills keep the test short; at most 1 + 2 x 2 = 5 < PAIRED_EPOCHS epochs complete.
    _kill_rerun_and_compare(PAIRED_CHILD, tmp_path / "killed", reference, clock.median(), signals, anchors)


def _kill_rerun_and_compare(script: str, run_dir: Path, reference: dict, epoch_time: float,
                            signals: list[signal.Signals], anchors: list[str]) -> None:
    """Kill runs of `script` by a seeded schedule, then let a rerun finish: it must end as `reference`.

    Schedule: (signal, anchor line, delay). Anchoring on "EPOCH" lets an attempt advance 1-2
    epochs; anchoring on "TRAINING" hits startup, checkpoint loading and the first epoch.
    """
    epochs = len(reference["history"])
    schedule = random.Random(2024)
    schedule.shuffle(signals)
    schedule.shuffle(anchors)
    epochs_done = 0
    for kill_signal, anchor in zip(signals, anchors):
        child = _start_child(run_dir, script)
        _wait_for_line(child, anchor)
        time.sleep(schedule.uniform(0.05, 1.0) * epoch_time)
        child.send_signal(kill_signal)
        _, stderr = child.communicate(timeout=60)
        if kill_signal == signal.SIGTERM:
            assert child.returncode == 1 and "TrainingPreempted" in stderr, (child.returncode, stderr)
        else:
            assert child.returncode == -signal.SIGKILL
        if (run_dir / CHECKPOINT_NAME).exists():
            state = _load(run_dir / CHECKPOINT_NAME)  # every checkpoint left behind loads...
            done = len(state["history"])
            assert done >= epochs_done and done < epochs
            _assert_same_history(state["history"], reference["history"][:done])  # ...the uninterrupted prefix
            epochs_done = done
    assert epochs_done >= 1, "no kill landed after a checkpoint: the resume path was not exercised"

    child = _start_child(run_dir, script)
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert stdout.splitlines()[1] == f"EPOCH {epochs_done + 1}"  # it resumed, not restarted
    final = _load(run_dir / CHECKPOINT_NAME)
    _assert_same_history(final["history"], reference["history"])
    for key in ("model", "ema"):
        for name, value in reference[key].items():
            assert torch.equal(value, final[key][name]), (key, name)
    assert final["best"]["epoch"] == reference["best"]["epoch"]
    assert not list(run_dir.glob("*.tmp")) and not list(run_dir.glob(".*.tmp"))


class SigtermAtStep(nn.Module):
    """Wraps a model; sends this process SIGTERM during the `at`-th training forward pass."""

    def __init__(self, inner: nn.Module, at: int | None):
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.at:
                os.kill(os.getpid(), signal.SIGTERM)
        return self.inner(x)


def test_sigterm_finishes_the_step_raises_and_the_rerun_matches(digits, tmp_path):
    settings = TrainSettings(**{**SETTINGS, "epochs": 3})
    handler_before = signal.getsignal(signal.SIGTERM)
    straight = train_classifier(SigtermAtStep(_model(), None), digits, settings, tmp_path / "straight",
                                progress=False)
    steps_per_epoch = -(-len(digits.train_x) // settings.batch_size)
    stopped = SigtermAtStep(_model(), at=steps_per_epoch + 5)  # mid epoch 2
    with pytest.raises(TrainingPreempted, match="SIGTERM during epoch 2"):
        train_classifier(stopped, digits, settings, tmp_path / "resumed", progress=False)
    assert stopped.calls == steps_per_epoch + 5  # the signalled step ran to its end, no further step began
    assert len(_load(tmp_path / "resumed" / CHECKPOINT_NAME)["history"]) == 1
    assert signal.getsignal(signal.SIGTERM) is handler_before  # the handler is removed again

    resumed = train_classifier(SigtermAtStep(_model(), None), digits, settings, tmp_path / "resumed",
                               progress=False)
    pd.testing.assert_frame_equal(straight.history, resumed.history)


def test_sigterm_during_paired_training_raises_and_the_rerun_matches(tmp_path):
    data, masks = _toy_data()
    settings = TrainSettings(**{**PAIRED_SETTINGS, "epochs": 3, "batch_size": 16})
    straight = train_paired(SigtermAtStep(_paired_model(), None), data, masks, settings, tmp_path / "straight",
                            progress=False, **PAIRED)
    steps_per_epoch = -(-len(data.train_x) // settings.batch_size)
    stopped = SigtermAtStep(_paired_model(), at=steps_per_epoch + 2)  # mid epoch 2
    with pytest.raises(TrainingPreempted, match="SIGTERM during epoch 2"):
        train_paired(stopped, data, masks, settings, tmp_path / "resumed", progress=False, **PAIRED)
    # One forward pass per step (image and pair together); the signalled step ran to its end.
    assert stopped.calls == steps_per_epoch + 2
    assert len(_load(tmp_path / "resumed" / CHECKPOINT_NAME)["history"]) == 1

    resumed = train_paired(SigtermAtStep(_paired_model(), None), data, masks, settings, tmp_path / "resumed",
                           progress=False, **PAIRED)
    pd.testing.assert_frame_equal(straight.history, resumed.history, check_exact=True)


def test_stale_temporary_checkpoints_are_removed(digits, tmp_path):
    stale = tmp_path / f".{CHECKPOINT_NAME}.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    train_classifier(_model(), digits, TrainSettings(**{**SETTINGS, "epochs": 1}), tmp_path, progress=False)
    assert not stale.exists()
    assert len(_load(tmp_path / CHECKPOINT_NAME)["history"]) == 1
