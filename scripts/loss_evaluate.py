"""Snakemake adapter: the loss study's evaluate step."""

from robustflow.jobs import run_step
from robustflow.studies.loss.steps import evaluate

run_step(snakemake, evaluate)
