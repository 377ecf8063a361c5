"""Time ``snakemake -n`` (validation + DAG build, no job) of the default and the paper config.

Every cluster job re-parses the Snakefile, so this cost is paid once per job there. Checkouts
are measured side by side, interleaved round by round, so a change in machine load hits all of
them alike. A checkout is measured with its own ``src`` first on ``PYTHONPATH``::

    git worktree add /tmp/before <old commit>
    python benchmarks/dag_build.py --checkout before=/tmp/before --checkout after=. --rounds 5

The paper config runs against the test fixtures (CIFAR-10 in its real format, an image-folder
task, the backgrounds-challenge layout, stand-in weight files), as its dry-run test does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures import paper_overrides  # noqa: E402

import yaml  # noqa: E402


def workdir_for(root: Path, checkout: Path, paper: bool) -> tuple[Path, list[str]]:
    """A working directory with the checkout's default config (and the paper config's fixtures)."""
    workdir = root / ("paper" if paper else "default")
    (workdir / "config").mkdir(parents=True)
    (workdir / "config" / "config.yaml").write_text((checkout / "config" / "config.yaml").read_text())
    if not paper:
        return workdir, []
    (workdir / "fixtures").mkdir()
    (workdir / "override.yaml").write_text(yaml.safe_dump(paper_overrides(workdir, checkout)))
    return workdir, ["--configfile", str(checkout / "config" / "paper.yaml"), str(workdir / "override.yaml")]


def dry_run_seconds(checkout: Path, workdir: Path, extra: list[str]) -> float:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(checkout / "workflow" / "Snakefile"),
               "--directory", str(workdir), "-n", "--cores", "2", "--quiet", "all", *extra]
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"dry run failed in {checkout}:\n{result.stdout}\n{result.stderr}")
    return elapsed


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", action="append", default=None, metavar="NAME=PATH",
                        help="a checkout to measure (repeatable); default: this one")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    checkouts = dict(item.split("=", 1) for item in (args.checkout or [f"this={REPO}"]))
    with tempfile.TemporaryDirectory() as tmp:
        setups = {(name, paper): workdir_for(Path(tmp) / name, Path(path).resolve(), paper)
                  for name, path in checkouts.items() for paper in (False, True)}
        times: dict[tuple[str, bool], list[float]] = {key: [] for key in setups}
        for _ in range(args.rounds):
            for (name, paper), (workdir, extra) in setups.items():
                times[(name, paper)].append(dry_run_seconds(Path(checkouts[name]).resolve(), workdir, extra))
    rows = [{"checkout": name, "config": "paper" if paper else "default", "median_s": statistics.median(values),
             "min_s": min(values), "rounds": len(values)} for (name, paper), values in times.items()]
    print("| checkout | config | median s | min s | rounds |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['checkout']} | {row['config']} | {row['median_s']:.2f} | {row['min_s']:.2f} | {row['rounds']} |")
    return rows


if __name__ == "__main__":
    main()
