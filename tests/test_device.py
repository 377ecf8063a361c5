"""GPU slot allocation (exclusive across processes, released on exit, even kill -9); device options on CPU."""

import os
import warnings
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from robustflow.data import load_digits
from robustflow.device import claim_gpu_slot
from robustflow.gpu_slots import GpuSlotsUnavailable, claim_gpus, gpu_pool, slot_directory
from robustflow.models import create_model
from robustflow.training import TrainSettings, train_classifier

SRC = str(Path(__file__).resolve().parents[1] / "src")

# Claims a slot, proves exclusivity with an O_EXCL marker per slot while holding it, then exits.
WORKER = """
import os, sys, time
from robustflow.gpu_slots import claim_gpus
slot_dir, markers, hold, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
claim = claim_gpus(count, slot_dir=slot_dir, poll_seconds=0.02)
assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(claim.device_ids)
created = []
for device_id in claim.device_ids:
    try:
        fd = os.open(os.path.join(markers, "held-" + device_id), os.O_CREAT | os.O_EXCL)
        os.close(fd)
        created.append(device_id)
    except FileExistsError:
        print("CONFLICT", device_id, flush=True)
print("CLAIMED", ",".join(claim.device_ids), flush=True)
time.sleep(hold)
for device_id in created:
    os.unlink(os.path.join(markers, "held-" + device_id))
"""


def _worker(tmp_path, gpu_count, hold, count=1):
    env = {**os.environ, "PYTHONPATH": SRC, "ROBUSTFLOW_GPU_COUNT": str(gpu_count)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path / "slots"), str(tmp_path / "markers"), str(hold), str(count)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def no_cuda_env(monkeypatch):
    # claim_gpus sets CUDA_VISIBLE_DEVICES; monkeypatch restores the test process's value afterwards.
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("ROBUSTFLOW_GPU_COUNT", raising=False)


@pytest.mark.parametrize("count", [1, 2])
def test_concurrent_processes_never_share_a_slot(tmp_path, count):
    (tmp_path / "markers").mkdir()
    pool_size, workers, hold = 3, 6, 0.3
    started = time.monotonic()
    processes = [_worker(tmp_path, pool_size, hold, count) for _ in range(workers)]
    outputs = [p.communicate(timeout=60) for p in processes]
    elapsed = time.monotonic() - started
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err
        assert "CONFLICT" not in out
    claimed = [out.split("CLAIMED ")[1].split()[0].split(",") for out, _ in outputs]
    assert all(len(ids) == count and len(set(ids)) == count and set(ids) <= {"0", "1", "2"} for ids in claimed)
    # At most 3 // count jobs hold slots at a time, so the holds must have queued up.
    rounds = -(-workers // (pool_size // count))
    assert elapsed >= rounds * hold


def test_a_killed_holder_frees_its_slots(tmp_path):
    (tmp_path / "markers").mkdir()
    holder = _worker(tmp_path, 2, hold=60, count=2)
    line = holder.stdout.readline()
    assert line.startswith("CLAIMED 0,1")
    with pytest.raises(GpuSlotsUnavailable, match="no 1 free GPU slot"):
        claim_gpus(1, slot_dir=tmp_path / "slots", timeout=0.2, poll_seconds=0.05, pool=["0", "1"])
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    claim = claim_gpus(2, slot_dir=tmp_path / "slots", timeout=5, poll_seconds=0.05, pool=["0", "1"])
    assert claim.device_ids == ("0", "1")
    claim.release()


def test_claim_sets_visible_devices_from_the_pool_and_release_frees_them(tmp_path, no_cuda_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert gpu_pool() == ["5", "7"]
    first = claim_gpus(1, slot_dir=tmp_path, timeout=0)
    assert first.device_ids == ("5",) and os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    second = claim_gpus(1, slot_dir=tmp_path, timeout=0, pool=["5", "7"])
    assert second.device_ids == ("7",)
    first.release()
    third = claim_gpus(1, slot_dir=tmp_path, timeout=0, pool=["5", "7"])
    assert third.device_ids == ("5",)
    assert (slot_directory(tmp_path) / "gpu-5.lock").read_text().strip() == str(os.getpid())
    second.release()
    third.release()


def test_pool_size_comes_from_the_env_override(no_cuda_env, monkeypatch):
    monkeypatch.setenv("ROBUSTFLOW_GPU_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # the explicit count wins
    assert gpu_pool() == ["0", "1", "2", "3"]
    monkeypatch.setenv("ROBUSTFLOW_GPU_COUNT", "two")
    with pytest.raises(ValueError, match="ROBUSTFLOW_GPU_COUNT"):
        gpu_pool()


def test_bad_requests_are_rejected(tmp_path, no_cuda_env):
    with pytest.raises(ValueError, match="count 3 exceeds the 2 GPU"):
        claim_gpus(3, slot_dir=tmp_path, pool=["0", "1"])
    with pytest.raises(ValueError, match="count must be >= 1"):
        claim_gpus(0, slot_dir=tmp_path, pool=["0"])
    with pytest.raises(ValueError, match="gpus must be >= 0"):
        claim_gpu_slot(-1, slot_dir=tmp_path)


def test_claim_gpu_slot_without_gpus_is_a_no_op(tmp_path, no_cuda_env):
    assert claim_gpu_slot(0, slot_dir=tmp_path) == ()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert not tmp_path.joinpath(slot_directory(tmp_path).name).exists()


def _tiny_run(checkpoint_dir, **options):
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, img_size=8, features=(4,), dropout=0.1)
    settings = TrainSettings(epochs=2, batch_size=128, lr=1e-2, crop_padding=1, seed=0, **options)
    return train_classifier(model, load_digits(image_size=8), settings, checkpoint_dir, progress=False)


def test_cuda_only_options_leave_cpu_runs_unchanged_and_do_not_block_resume(tmp_path):
    torch.set_num_threads(1)
    plain = _tiny_run(tmp_path / "plain")
    with_options = _tiny_run(tmp_path / "options", amp=True, channels_last=True)
    pd.testing.assert_frame_equal(plain.history, with_options.history, check_exact=True)
    # Execution options choose how, not which run: the finished checkpoint is reused, not retrained.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reused = _tiny_run(tmp_path / "plain", amp=True, channels_last=True, compile=True)
    pd.testing.assert_frame_equal(plain.history, reused.history, check_exact=True)
