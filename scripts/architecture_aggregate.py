"""Snakemake adapter: the architecture study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.summary import aggregate

run_step(snakemake, aggregate)
