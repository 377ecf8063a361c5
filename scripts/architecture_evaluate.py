"""Snakemake adapter: the architecture study's evaluate step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import evaluate

run_step(snakemake, evaluate)
