"""Snakemake adapter: the background study's influence step."""

from robustflow.jobs import run_step
from robustflow.studies.background.steps import influence

run_step(snakemake, influence)
