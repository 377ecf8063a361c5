"""Snakemake adapter: the repeatability study's prepare_sequences step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.steps import prepare_sequences

run_step(snakemake, prepare_sequences)
