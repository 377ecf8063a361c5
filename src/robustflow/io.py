"""Atomic writes: a killed job never leaves a truncated file behind."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pandas as pd
import torch


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


@contextmanager
def log_to(path: str | Path) -> Iterator[None]:
    """Send stderr (progress bars, warnings) to `path`; a failure's traceback lands there too.

    Restores stderr before the exception propagates, so the caller still reports it.
    """
    previous = sys.stderr
    with open(path, "w") as log:
        sys.stderr = log
        try:
            yield
        except BaseException:
            traceback.print_exc(file=log)
            raise
        finally:
            sys.stderr = previous


def checkpoint_dir(output: str | Path) -> Path:
    """Where the job writing ``output`` keeps its checkpoints: ``<output stem>_checkpoints`` beside it,
    so a rerun of the same job finds them and two jobs writing into one folder do not share them."""
    output = Path(output)
    return output.with_name(f"{output.stem}_checkpoints")


def concat_tables(paths) -> pd.DataFrame:
    """The CSV files at ``paths`` as one table; empty files add only their header."""
    frames = [pd.read_csv(path) for path in paths]
    if not frames:
        raise ValueError("no tables to join: the list of paths is empty")
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0]
