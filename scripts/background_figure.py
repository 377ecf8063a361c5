"""Snakemake adapter: the background study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.background.summary import figure

run_step(snakemake, figure)
