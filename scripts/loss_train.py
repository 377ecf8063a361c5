"""Snakemake adapter: the loss study's train step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.steps import train

run_step(snakemake, train)
