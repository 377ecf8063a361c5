"""Snakemake adapter: the repeatability study's prepare_cifar10c step."""

from robustflow.jobs import run_step
from robustflow.studies.repeatability.steps import prepare_cifar10c

run_step(snakemake, prepare_cifar10c)
