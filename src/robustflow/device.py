"""Device selection: cuda when available (and asked for), else cpu."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from robustflow.gpu_slots import GpuClaim, claim_gpus

_held_claims: list[GpuClaim] = []  # kept for the life of the process: dropping a claim frees its slots


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config 'device: cuda' but no CUDA device is visible to this job")
    return torch.device(requested)


def configure_threads(threads: int) -> None:
    """One job, `threads` cores: Snakemake runs several jobs side by side."""
    torch.set_num_threads(max(1, int(threads)))


def describe_torch() -> str:
    """torch's version, CUDA build, threads and the devices this job sees, without starting CUDA
    (a device name would create a context in a process that may only spawn data-parallel workers)."""
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        devices = f"{torch.cuda.device_count()} CUDA device(s) visible (CUDA_VISIBLE_DEVICES={visible})"
    else:
        devices = "cpu only (no CUDA device visible)"
    build = f"CUDA build {torch.version.cuda or 'none'}"
    return f"{torch.__version__} ({build}), {torch.get_num_threads()} threads, {devices}"


def claim_gpu_slot(gpus: int, slot_dir: str | Path | None = None, timeout: float | None = None) -> tuple[str, ...]:
    """Give this job `gpus` free GPUs of the machine (a no-op returning () for 0); call before CUDA starts.

    Locks free device ids (see `robustflow.gpu_slots`), sets CUDA_VISIBLE_DEVICES to them and
    holds them until the process exits; returns the ids.
    """
    if gpus < 0:
        raise ValueError(f"gpus must be >= 0, got {gpus}")
    if gpus == 0:
        return ()
    claim = claim_gpus(gpus, slot_dir=slot_dir, timeout=timeout)
    _held_claims.append(claim)
    return claim.device_ids
