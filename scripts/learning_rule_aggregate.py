"""Snakemake adapter: the learning-rule study's aggregate step."""

from robustflow.jobs import run_step
from robustflow.studies.learning_rule.summary import aggregate

run_step(snakemake, aggregate)
