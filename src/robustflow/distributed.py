"""Data-parallel helpers: launch one process per device, shard batches, reduce across ranks.

The training loop (`robustflow.training`) draws every global batch with one shared
generator on all ranks; each rank then trains on its slice (`shard_bounds`), so data
order and augmentation are those of a single process.
"""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Start and stop of rank `rank`'s contiguous slice of `n` items; sizes differ by at most one."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}), got {rank}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def backend_for(device_type: str) -> str:
    """nccl for CUDA devices, gloo for CPU processes."""
    return "nccl" if device_type == "cuda" else "gloo"


def launch_workers(worker: Callable[..., None], world_size: int, args: tuple[Any, ...], backend: str) -> None:
    """Run ``worker(rank, world_size, *args)`` in `world_size` fresh processes with a process group.

    The group rendezvous through a file (no TCP port to pick or collide on). SIGTERM sent
    to this process is forwarded to the workers, which stop together at their next step.
    A worker that fails raises here (`torch.multiprocessing.ProcessRaisedException`, or
    `ProcessExitedException` with its exit code).
    """
    if world_size < 2:
        raise ValueError(f"world_size must be >= 2 for data-parallel workers, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="robustflow-ddp-") as rendezvous:
        init_method = (Path(rendezvous) / "store").as_uri()
        context = mp.start_processes(
            _init_and_run, args=(worker, world_size, init_method, backend, args),
            nprocs=world_size, join=False, start_method="spawn",
        )

        def forward_sigterm(signum, frame):
            for process in context.processes:
                if process.is_alive():
                    process.terminate()

        previous = signal.signal(signal.SIGTERM, forward_sigterm)
        try:
            while not context.join():
                pass
        finally:
            signal.signal(signal.SIGTERM, previous)


def _init_and_run(rank: int, worker, world_size: int, init_method: str, backend: str, args: tuple) -> None:
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
    try:
        worker(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is true on at least one."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_across_ranks(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64, so counts stay exact)."""
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """`obj` of every rank, in rank order, on every rank."""
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
