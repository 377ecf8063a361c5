"""Snakemake adapter: the loss study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.steps import figure

run_step(snakemake, figure)
