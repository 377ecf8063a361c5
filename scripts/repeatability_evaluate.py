"""Snakemake adapter: the repeatability study's evaluate step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.steps import evaluate

run_step(snakemake, evaluate)
