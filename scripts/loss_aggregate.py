"""Snakemake adapter: the loss study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.summary import aggregate

run_step(snakemake, aggregate)
