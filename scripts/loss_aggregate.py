"""Snakemake adapter: the loss study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.steps import aggregate

run_step(snakemake, aggregate)
