"""Snakemake adapter: the architecture study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.summary import figure

run_step(snakemake, figure)
