"""Atomic writes and per-job logs."""

import sys

import pytest

from robustflow.io import atomic_path, log_to


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
