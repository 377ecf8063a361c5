"""Snakemake adapter: the loss study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.summary import figure

run_step(snakemake, figure)
