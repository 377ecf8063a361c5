"""Snakemake adapter: the background study's evaluate step."""

from robustflow.jobs import run_step
from robustflow.studies.background.steps import evaluate

run_step(snakemake, evaluate)
