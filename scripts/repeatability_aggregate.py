"""Snakemake adapter: the repeatability study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.summary import aggregate

run_step(snakemake, aggregate)
