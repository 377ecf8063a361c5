"""The fixed cost of a pipeline job: start-up through a rule's own script path, doing no work.

Every job of the DAG is a fresh interpreter: Snakemake runs the rule's script, which imports
`robustflow.jobs` and the study module holding its step, then `run_step` opens the log and
sets the device up before the step's own work starts. This measures that path for one script
of each kind (train, evaluate, aggregate, figure) of every study, with the step replaced by a
no-op, beside a bare interpreter start and a bare ``import torch``; what Snakemake itself adds
per job (a rule whose script only touches its output); and, as the first work of a step, the
plotting libraries' import and the default's data load. Checkouts are measured side by side, interleaved
round by round, so a change in machine load hits all of them alike; a checkout runs with its
own ``src`` first on ``PYTHONPATH``::

    git worktree add /tmp/before <old commit>
    python benchmarks/job_overhead.py --checkout before=/tmp/before --checkout after=. --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
KINDS = {  # kind -> the script of that kind per study (the learning-rule study trains in its cells)
    "train": ["loss_train", "learning_rule_cell", "architecture_train", "background_train", "repeatability_train"],
    "evaluate": ["loss_evaluate", "architecture_evaluate", "background_evaluate", "repeatability_evaluate"],
    "aggregate": [f"{study}_aggregate" for study in ("loss", "learning_rule", "architecture", "background",
                                                      "repeatability")],
    "figure": [f"{study}_figure" for study in ("loss", "learning_rule", "architecture", "background",
                                                "repeatability")],
}
BASELINES = {"bare interpreter": "pass", "bare import torch": "import torch",
             "import matplotlib.pyplot, seaborn (a figure step's own first work)": "import matplotlib.pyplot, seaborn"}
# Per checkout, beside the no-op jobs: the default's data as a job's step first loads it.
DATA_LOAD = {"load the digits (the default's data)": "from robustflow.data import load_dataset; load_dataset('digits')"}

# Runs one adapter script as Snakemake would, with a stand-in `snakemake` object and the step
# swapped for a no-op, so only the imports and `run_step`'s own set-up are timed.
DRIVER = """
import json, runpy, sys, types
script, spec_path = sys.argv[1], sys.argv[2]
spec = json.load(open(spec_path))
import robustflow.jobs as jobs
run_step = jobs.run_step
jobs.run_step = lambda smk, step: run_step(smk, lambda config, job, inputs, outputs: None)
class Params(dict):
    __getattr__ = dict.__getitem__
snakemake = types.SimpleNamespace(
    log=[spec["log"]], threads=1, rule=spec["rule"], resources=types.SimpleNamespace(gpu=0),
    params=Params(config=spec["config"], job=spec["job"]), wildcards=types.SimpleNamespace(**spec["job"]),
    input=types.SimpleNamespace(), output=types.SimpleNamespace())
runpy.run_path(script, init_globals={"snakemake": snakemake}, run_name="__main__")
"""

EMPTY_JOBS_SNAKEFILE = """
rule all:
    input: expand("out/{i}.txt", i=range(int(config["jobs"])))

rule empty:
    output: "out/{i}.txt"
    log: "logs/{i}.log"
    script: "empty.py"
"""


def job_spec(script: str, folder: Path) -> Path:
    """The job config and record a job of ``script`` gets on the default config (its study's first run)."""
    sys.path.insert(0, str(REPO / "src"))
    from robustflow.config import load_schema
    from robustflow.studies import plan, validate

    config = validate(yaml.safe_load((REPO / "config" / "config.yaml").read_text()), load_schema(
        REPO / "config" / "schema.yaml"))
    prefix, step = next((p, script.removeprefix(f"{p}_")) for p in ("learning_rule", "loss", "architecture",
                                                                    "background", "repeatability")
                        if script.startswith(f"{p}_"))
    study = plan(f"{prefix}_study")
    job = {"figure": study.FIGURES[0]} if step == "figure" else {}
    if step == "cell":
        job = study.variants(config)[0]
    elif step in ("train", "evaluate"):
        job = study.runs(config)[0]
    spec = {"rule": script, "log": str(folder / f"{script}.log"), "job": job,
            "config": study.job_config(config, step, job)}
    path = folder / f"{script}.json"
    path.write_text(json.dumps(spec))
    return path


def seconds(command: list[str], env: dict, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return elapsed


def snakemake_per_job(folder: Path, env: dict, jobs: int = 6) -> float:
    """What Snakemake adds per job: the slope of wall time over 1 and ``jobs`` jobs whose script
    only touches its output (an interpreter start included)."""
    (folder / "Snakefile").write_text(EMPTY_JOBS_SNAKEFILE)
    (folder / "empty.py").write_text("open(snakemake.output[0], 'w').close()\n")

    def run(n: int) -> float:
        for name in ("out", "logs", ".snakemake"):
            subprocess.run(["rm", "-rf", str(folder / name)], check=True)
        return seconds([sys.executable, "-m", "snakemake", "--cores", "1", "--quiet", "all", "--config",
                        f"jobs={n}"], env, cwd=folder)

    return (run(jobs) - run(1)) / (jobs - 1)


def measure(checkouts: dict[str, Path], rounds: int, folder: Path, kinds: list[str]) -> dict[tuple[str, str], list[float]]:
    scripts = [script for kind in kinds for script in KINDS[kind]]
    specs = {script: job_spec(script, folder) for script in scripts}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(rounds):
        for label, code in BASELINES.items():
            times.setdefault(("-", label), []).append(seconds([sys.executable, "-c", code], dict(os.environ)))
        times.setdefault(("-", "snakemake job, script touching its output"), []).append(
            snakemake_per_job(folder / "snakemake", dict(os.environ)))
        for name, checkout in checkouts.items():
            env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
            for script in scripts:
                command = [sys.executable, "-c", DRIVER, str(checkout / "scripts" / f"{script}.py"), str(specs[script])]
                times.setdefault((name, script), []).append(seconds(command, env))
            for label, code in DATA_LOAD.items():
                times.setdefault((name, label), []).append(seconds([sys.executable, "-c", code], env))
    return times


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=None, metavar="NAME=PATH",
                        help="a checkout to measure (repeatable); default: this one")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS), help="job kinds to measure")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    checkouts = {name: Path(path).resolve() for name, path in
                 (item.split("=", 1) for item in (args.checkout or [f"this={REPO}"]))}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "snakemake").mkdir()
        times = measure(checkouts, args.rounds, Path(tmp), args.kinds)
    torch_s = statistics.median(times[("-", "bare import torch")])
    kind_of = {script: kind for kind, scripts in KINDS.items() for script in scripts}
    rows = [{"checkout": name, "kind": kind_of.get(what, "baseline" if name == "-" else "data"), "what": what,
             "median_s": statistics.median(values), "min_s": min(values),
             "x_import_torch": statistics.median(values) / torch_s, "rounds": len(values)}
            for (name, what), values in times.items()]
    print("| checkout | kind | job | median s | min s | x bare import torch |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['checkout']} | {row['kind']} | {row['what']} | {row['median_s']:.2f} | {row['min_s']:.2f} "
              f"| {row['x_import_torch']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
