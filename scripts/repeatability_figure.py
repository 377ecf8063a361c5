"""Snakemake adapter: the repeatability study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.steps import figure

run_step(snakemake, figure)
