"""Snakemake adapter: the background study's train step."""

from robustflow.jobs import run_step
from robustflow.studies.background.steps import train

run_step(snakemake, train)
