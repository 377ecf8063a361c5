"""Snakemake adapter: the architecture study's prepare_cifar10c step."""

from robustflow.jobs import run_step
from robustflow.studies.architecture.steps import prepare_cifar10c

run_step(snakemake, prepare_cifar10c)
