"""Snakemake adapter: the learning-rule study's figure step."""

from robustflow.jobs import run_step
from robustflow.studies.learning_rule.summary import figure

run_step(snakemake, figure)
