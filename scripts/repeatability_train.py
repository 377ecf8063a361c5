"""Snakemake adapter: the repeatability study's train step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.steps import train

run_step(snakemake, train)
