"""Snakemake adapter: the architecture study's pretrain step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import pretrain

run_step(snakemake, pretrain)
