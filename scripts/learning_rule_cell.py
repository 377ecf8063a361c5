"""Snakemake adapter: the learning-rule study's cell step."""

from robustflow.jobs import run_step
from robustflow.studies.learning_rule.steps import cell

run_step(snakemake, cell)
