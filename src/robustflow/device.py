"""Device selection: cuda when available (and asked for), else cpu."""

from __future__ import annotations

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config 'device: cuda' but no CUDA device is visible to this job")
    return torch.device(requested)


def configure_threads(threads: int) -> None:
    """One job, `threads` cores: Snakemake runs several jobs side by side."""
    torch.set_num_threads(max(1, int(threads)))
