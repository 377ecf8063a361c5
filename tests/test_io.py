"""Atomic writes, the modes of the files they leave, and per-job logs."""

import dataclasses
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest
import torch

from robustflow import io
from robustflow.io import (
    atomic_path,
    atomic_torch_save,
    current_umask,
    log_to,
    write_csv,
    write_json,
)


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half-writ")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_log_to_keeps_the_traceback_and_restores_stderr(tmp_path):
    log = tmp_path / "job.log"
    before = sys.stderr
    with pytest.raises(KeyError):
        with log_to(log):
            print("progress", file=sys.stderr)
            {}["amp"]
    assert sys.stderr is before
    text = log.read_text()
    assert "progress" in text and "KeyError: 'amp'" in text
    assert text.rstrip().splitlines()[-1].endswith(" s") and "failed after" in text


@pytest.fixture(params=[0o022, 0o077])
def umask(request):
    """Run the test under each umask, then put the test process's own back."""
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_is_read_with_and_without_proc(umask, monkeypatch, tmp_path):
    assert current_umask() == umask
    monkeypatch.setattr(io, "_PROC_STATUS", tmp_path / "absent")
    assert current_umask() == umask
    assert current_umask() == umask  # the fallback put the umask back


def test_written_files_and_folders_follow_the_umask(umask, tmp_path):
    from robustflow.plots.style import nothing_to_show, save_figure

    write_csv(pd.DataFrame({"top1": [0.5]}), tmp_path / "new" / "table.csv")
    write_json({"top1": 0.5}, tmp_path / "claims.json")
    atomic_torch_save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    save_figure(nothing_to_show("test"), tmp_path / "figure.pdf", tmp_path / "figure.png")
    written = ["new/table.csv", "claims.json", "model.pt", "figure.pdf", "figure.png"]
    assert {name: _mode(tmp_path / name) for name in written} == {name: 0o666 & ~umask for name in written}
    assert _mode(tmp_path / "new") == 0o777 & ~umask


def test_checkpoints_follow_the_umask(umask, tmp_path):
    from robustflow.data import load_digits
    from robustflow.models import create_model
    from robustflow.training import (
        CHECKPOINT_NAME,
        PREVIOUS_CHECKPOINT_NAME,
        TrainSettings,
        train_classifier,
    )

    data = load_digits(image_size=8)
    data = dataclasses.replace(data, train_x=data.train_x[:64], train_y=data.train_y[:64])  # modes, not learning
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=data.num_classes, img_size=8, features=(4, 8))
    train_classifier(model, data, TrainSettings(epochs=2, batch_size=256), tmp_path / "checkpoints", progress=False)
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        assert _mode(tmp_path / "checkpoints" / name) == 0o666 & ~umask, name


def test_generated_corruption_and_perturbation_sets_follow_the_umask(umask, tmp_path):
    from robustflow.data.cifar10c import write_cifar10c
    from robustflow.data.cifar10p import write_cifar10p

    images = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    write_cifar10c(tmp_path / "c", images, torch.zeros(2, dtype=torch.int64), ["fog"], seed=0)
    write_cifar10p(tmp_path / "p", images, ["brightness"], seed=0)
    written = ["c/labels.npy", "c/fog.npy", "p/brightness.npy"]
    assert {name: _mode(tmp_path / name) for name in written} == {name: 0o666 & ~umask for name in written}


def test_light_jobs_import_neither_torch_nor_pandas():
    check = "import robustflow.jobs, sys; assert 'torch' not in sys.modules; assert 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", check], check=True)
