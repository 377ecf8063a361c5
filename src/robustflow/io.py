"""Atomic writes (a killed job never leaves a truncated file behind) and per-job logs.

Light jobs (aggregates, figures) import this module through `robustflow.jobs`, so it imports
neither torch nor pandas at module level: the functions that need them import them.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# Every module of the library logs to a child of this logger; `log_to` sends it to the job's log.
LOGGER_NAME = "robustflow"
LOG_FORMAT = "%(asctime)s %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
_PROC_STATUS = Path("/proc/self/status")


def current_umask() -> int:
    """The process's umask, read without changing it where Linux reports it (``/proc/self/status``).

    Elsewhere it is set to 0o077 and restored at once: a file another thread creates in between
    gets the stricter mode, never a looser one.
    """
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over `path` on success.

    The file gets the mode of any file the user creates (0o666 without the umask): mkstemp's
    owner-only temporary would otherwise hide results from the user's group. Folders it
    creates follow the umask too (mkdir applies it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: str | Path) -> None:
    import torch  # here, not at module level: light jobs import this module without torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


class _BesideProgressBars(logging.StreamHandler):
    """Writes each record on a line of its own, clearing and redrawing any tqdm bar on the stream."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm = sys.modules.get("tqdm")  # bars exist only where tqdm is loaded; light jobs never load it
        if tqdm is None:
            super().emit(record)
            return
        with tqdm.tqdm.external_write_mode(file=self.stream):
            super().emit(record)


def log_records_to(stream, level: int = logging.INFO) -> logging.Handler:
    """Send the library's log records at ``level`` and up to ``stream`` (and nowhere else: they
    belong in the job's log, not on the console too); returns the handler it added."""
    handler = _BesideProgressBars(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler


@contextmanager
def log_to(path: str | Path, header: dict[str, object] | None = None) -> Iterator[None]:
    """Send stderr (progress bars, warnings) and the library's log records (INFO and up) to `path`.

    The log starts with the ``header`` items (what the job runs), the Python and robustflow
    versions, the host and the start time, and ends with the elapsed time; a failure's traceback
    lands there too. File descriptor 2 points at the log as well, so that what spawned processes
    (data-parallel workers) and C libraries write lands in it. Restores stderr and the logger
    before the exception propagates, so the caller still reports it.
    """
    previous, previous_fd = sys.stderr, os.dup(2)
    logger = logging.getLogger(LOGGER_NAME)
    saved = logger.level, logger.propagate
    with open(path, "w", buffering=1) as log:  # line-buffered: its lines and the workers' do not mix
        sys.stderr = log
        os.dup2(log.fileno(), 2)
        handler = log_records_to(log)
        started = time.monotonic()
        _log_header(logger, header or {})
        try:
            yield
        except BaseException:
            traceback.print_exc(file=log)
            logger.info("failed after %.1f s", time.monotonic() - started)
            raise
        else:
            logger.info("done in %.1f s", time.monotonic() - started)
        finally:
            logger.removeHandler(handler)
            logger.setLevel(saved[0])
            logger.propagate = saved[1]
            log.flush()
            os.dup2(previous_fd, 2)
            os.close(previous_fd)
            sys.stderr = previous


def _log_header(logger: logging.Logger, header: dict[str, object]) -> None:
    runtime = {"python": platform.python_version(), "robustflow": _installed_version(),
               "host": socket.gethostname(), "pid": os.getpid(),
               "start": datetime.now().astimezone().isoformat(timespec="seconds")}
    for key, value in {**header, **runtime}.items():
        logger.info("%s: %s", key, value)


def _installed_version() -> str:
    try:
        return importlib.metadata.version("robustflow")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "not installed"


def checkpoint_dir(output: str | Path) -> Path:
    """Where the job writing ``output`` keeps its checkpoints: ``<output stem>_checkpoints`` beside it,
    so a rerun of the same job finds them and two jobs writing into one folder do not share them."""
    output = Path(output)
    return output.with_name(f"{output.stem}_checkpoints")


def concat_tables(paths) -> pd.DataFrame:
    """The CSV files at ``paths`` as one table; empty files add only their header."""
    import pandas as pd  # here, not at module level: light jobs that write no table skip pandas

    frames = [pd.read_csv(path) for path in paths]
    if not frames:
        raise ValueError("no tables to join: the list of paths is empty")
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled, ignore_index=True) if filled else frames[0]
