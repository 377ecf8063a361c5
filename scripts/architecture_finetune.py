"""Snakemake adapter: the architecture study's finetune step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import finetune

run_step(snakemake, finetune)
