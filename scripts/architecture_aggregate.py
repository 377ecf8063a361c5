"""Snakemake adapter: the architecture study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import aggregate

run_step(snakemake, aggregate)
