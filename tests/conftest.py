"""Fixtures shared by test modules."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny pipeline (all five studies), run once for every test that needs it: every
    job records the config keys it never read, and every figure job fails on a finding of the
    figure check (so every figure of every study is checked)."""
    from robustflow.jobs import TRACE_ENV
    from robustflow.plots.style import CHECK_ENV
    from tests.test_workflow import TINY_CONFIG, snakemake, workdir_with

    workdir = workdir_with(tmp_path_factory.mktemp("tiny"), TINY_CONFIG)
    snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "override.yaml"),
              env={TRACE_ENV: str(workdir / "trace"), CHECK_ENV: "1"})
    return workdir
