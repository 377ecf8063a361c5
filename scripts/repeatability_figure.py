"""Snakemake adapter: the repeatability study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.summary import figure

run_step(snakemake, figure)
