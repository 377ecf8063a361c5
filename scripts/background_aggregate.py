"""Snakemake adapter: the background study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.background.summary import aggregate

run_step(snakemake, aggregate)
