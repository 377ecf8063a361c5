"""GPU slots for jobs on one multi-GPU machine: each job locks free device ids and sees only those.

Snakemake counts GPUs (`resources: gpu`) but does not say which device a job gets. A job
calls `claim_gpus` before CUDA initialises: it takes an exclusive `flock` on one lock file
per device id in a shared folder and sets ``CUDA_VISIBLE_DEVICES`` to the ids it holds.
The kernel drops the locks when the process exits, however it exits (kill -9 included),
so no slot outlives its job. Lock files live in a per-host subfolder, so a folder on a
shared filesystem serves several nodes without mixing their devices.

Importing this module does not import torch (workers start fast).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

GPU_COUNT_ENV = "ROBUSTFLOW_GPU_COUNT"
SLOT_DIR_ENV = "ROBUSTFLOW_GPU_SLOT_DIR"
DEFAULT_SLOT_DIR = "results/.gpu_slots"


class GpuSlotsUnavailable(TimeoutError):
    """No set of free GPU slots appeared before the timeout."""


@dataclass
class GpuClaim:
    """Device ids held by this process; the locks last as long as this object (or the process)."""

    device_ids: tuple[str, ...]
    _handles: list[IO[str]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for handle in self._handles:
            handle.close()  # closing the descriptor drops its flock
        self._handles.clear()


def gpu_pool(environ: dict[str, str] | None = None) -> list[str]:
    """Device ids jobs may claim.

    ``ROBUSTFLOW_GPU_COUNT=N`` gives ids 0..N-1; otherwise the entries of a non-empty
    ``CUDA_VISIBLE_DEVICES``; otherwise every CUDA device, counted in a subprocess so
    this process does not initialise CUDA before choosing its devices.
    """
    environ = os.environ if environ is None else environ
    if environ.get(GPU_COUNT_ENV, "").strip():
        raw = environ[GPU_COUNT_ENV]
        if not raw.strip().isdigit():
            raise ValueError(f"{GPU_COUNT_ENV} must be a non-negative integer, got {raw!r}")
        return [str(i) for i in range(int(raw))]
    visible = environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        return [entry.strip() for entry in visible.split(",") if entry.strip()]
    count = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return [str(i) for i in range(int(count))]


def slot_directory(slot_dir: str | Path | None = None) -> Path:
    """`slot_dir` (or ``$ROBUSTFLOW_GPU_SLOT_DIR``, or results/.gpu_slots) / this host's name."""
    base = slot_dir if slot_dir is not None else os.environ.get(SLOT_DIR_ENV, DEFAULT_SLOT_DIR)
    return Path(base) / socket.gethostname()


def _lock_file_name(device_id: str) -> str:
    # Ids can be UUIDs (GPU-8f2c...) or MIG names; keep them file-name safe.
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", device_id) + ".lock"


def _try_lock(path: Path) -> IO[str] | None:
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def claim_gpus(
    count: int,
    slot_dir: str | Path | None = None,
    timeout: float | None = None,
    poll_seconds: float = 0.5,
    pool: list[str] | None = None,
) -> GpuClaim:
    """Lock `count` free device ids from `pool` (default `gpu_pool()`) and make them this process's CUDA devices.

    Sets ``CUDA_VISIBLE_DEVICES`` to the claimed ids, so it must run before CUDA
    initialises. All `count` ids are taken at once under a short allocation lock (no two
    jobs can each hold half of what the other needs). Waits for free slots, polling every
    `poll_seconds`, up to `timeout` seconds (None: forever); keep the returned claim alive.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
        raise RuntimeError("claim_gpus must run before CUDA initialises: CUDA_VISIBLE_DEVICES is read only then")
    pool = gpu_pool() if pool is None else pool
    if count > len(pool):
        raise ValueError(f"count {count} exceeds the {len(pool)} GPU(s) in the pool {pool}")
    directory = slot_directory(slot_dir)
    directory.mkdir(parents=True, exist_ok=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with (directory / ".allocate.lock").open("a+") as allocation:
            fcntl.flock(allocation, fcntl.LOCK_EX)
            held: list[tuple[str, IO[str]]] = []
            for device_id in pool:
                handle = _try_lock(directory / _lock_file_name(device_id))
                if handle is not None:
                    held.append((device_id, handle))
                    if len(held) == count:
                        break
            if len(held) == count:
                for _, handle in held:
                    handle.truncate(0)
                    handle.write(f"{os.getpid()}\n")  # who holds it, for a person looking
                    handle.flush()
                claim = GpuClaim(tuple(device_id for device_id, _ in held), [handle for _, handle in held])
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claim.device_ids)
                return claim
            for _, handle in held:
                handle.close()
        if deadline is not None and time.monotonic() >= deadline:
            raise GpuSlotsUnavailable(
                f"no {count} free GPU slot(s) of {pool} in {directory} after {timeout} s"
            )
        time.sleep(poll_seconds)
