"""The whole pipeline through a real SLURM cluster (tests/slurm/start_cluster.sh) equals a local run."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_workflow import planned_jobs, workdir_with

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]
# Hard guard: a hung SLURM run (e.g. status polling that never sees the jobs finish) must not
# hang the test suite; SIGTERM alone does not always stop snakemake, hence the -k.
RUN_TIMEOUT_S = 1500

# Every rule of the loss and learning-rule studies, as few jobs as still exercise them: 3 loss
# runs (CE and two margin lambdas for the ablation figure), 2 learning-rule cells. Each cluster
# job starts Snakemake twice (batch script, then srun), so every job costs tens of seconds.
TINY_CONFIG = {
    "device": "cpu",
    "architecture_study": {"enabled": False},
    "background_study": {"enabled": False},
    "repeatability_study": {"enabled": False},
    "noise_suite": {"types": ["gaussian"], "levels": [0.0, 0.5], "seed": 1},
    "loss_study": {
        "model": {"name": "small_cnn", "kwargs": {"features": [4, 8]}},
        "training": {"epochs": 1, "batch_size": 128},
        "seeds": [0],
        "sweep": [{"loss": ["ce"]}, {"loss": ["margin"], "margin_lambda": [1, 10]}],
        "resources": {"gpu": 0, "threads": 1, "mem_mb": 1000, "runtime": 5},
    },
    "learning_rule_study": {
        "task": {"source": "digits", "image_size": 16},
        "methods": ["hebbian", "sgd_mse"],
        "constraints": [None],
        "seeds": [0, 1],
        "epochs": 1,
        "sgd_lrs": [0.01, 0.1],
        "noise_types": ["gaussian"],
        "noise_levels": [0.0, 0.3],
        "resources": {"gpu": 0, "threads": 1, "mem_mb": 1000, "runtime": 5},
    },
}

SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def slurm_reachable() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except subprocess.TimeoutExpired:
        return False


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not slurm_reachable(),
                       reason="no SLURM controller reachable: run tests/slurm/start_cluster.sh"),
]


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    with open(workdir / "snakemake.out", "w") as log:  # the child keeps its own copy of the fd
        return subprocess.Popen(
            ["timeout", "-k", "30", str(RUN_TIMEOUT_S), *SNAKEMAKE, "--directory", str(workdir),
             "--configfile", str(workdir / "override.yaml"), *args],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def cancel_jobs_of(workdir: Path) -> None:
    """Cancel the SLURM jobs still queued or running in `workdir` (after a failed run)."""
    queue = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    ids = [line.split()[0] for line in queue.splitlines() if line.split()[1:] == [str(workdir)]]
    if ids:
        subprocess.run(["scancel", *ids])


def finished(run: subprocess.Popen, workdir: Path) -> subprocess.CompletedProcess:
    returncode = run.wait()
    output = (workdir / "snakemake.out").read_text()
    if returncode != 0:
        cancel_jobs_of(workdir)
        raise AssertionError(f"snakemake in {workdir} failed (rc {returncode}):\n{output[-6000:]}")
    return subprocess.CompletedProcess(run.args, returncode, stdout=output)


def result_files(workdir: Path, folder: str) -> list[str]:
    return sorted(path.name for path in (workdir / "results" / folder).iterdir())


def test_tiny_pipeline_through_slurm_equals_local_run(tmp_path):
    slurm_dir = workdir_with(tmp_path / "slurm", TINY_CONFIG)
    local_dir = workdir_with(tmp_path / "local", TINY_CONFIG)
    # Both at once: the SLURM run spends much of its time waiting on the scheduler.
    slurm_run = start_snakemake(slurm_dir, "--profile", str(REPO / "profiles" / "slurm-ci"))
    local_run = start_snakemake(local_dir, "--cores", "2")
    local_result = finished(local_run, local_dir)
    slurm_result = finished(slurm_run, slurm_dir)

    jobs = planned_jobs(slurm_result)
    assert jobs == planned_jobs(local_result)
    # `all` only collects inputs, so Snakemake runs it in-process; every other job is submitted.
    submitted = dict(SUBMITTED.findall(slurm_result.stdout))
    assert jobs["loss_train"] == 3 and jobs["learning_rule_cell"] == 2
    assert len(submitted) == jobs["total"] - jobs["all"]
    slurm_ids = sorted(set(submitted.values()), key=int)
    assert len(slurm_ids) == len(submitted)

    accounting = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(slurm_ids), "-o", "JobID,State,WorkDir"],
        capture_output=True, text=True, check=True,
    ).stdout
    records = {job_id: (state, workdir) for job_id, state, workdir in
               (line.split("|") for line in accounting.splitlines())}
    assert sorted(records, key=int) == slurm_ids
    assert all(state == "COMPLETED" and workdir == str(slurm_dir) for state, workdir in records.values())

    # CPU runs are deterministic: every table is byte-identical; figures need only exist.
    tables = result_files(local_dir, "tables")
    assert {"loss_summary.csv", "loss_claims.csv", "learning_rule_summary.csv"} <= set(tables)
    assert result_files(slurm_dir, "tables") == tables
    for name in tables:
        local_table = (local_dir / "results" / "tables" / name).read_bytes()
        assert (slurm_dir / "results" / "tables" / name).read_bytes() == local_table, name
    assert result_files(slurm_dir, "figures") == result_files(local_dir, "figures")
    assert len(result_files(local_dir, "figures")) == 2 * (jobs["loss_figure"] + jobs["learning_rule_figure"])
