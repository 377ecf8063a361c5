"""Snakemake adapter: the architecture study's train step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import train

run_step(snakemake, train)
