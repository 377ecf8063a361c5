"""Snakemake adapter: the background study's generate_set step."""

from robustflow.jobs import run_step
from robustflow.studies.background.steps import generate_set

run_step(snakemake, generate_set)
