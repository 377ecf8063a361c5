"""Snakemake adapter: make CIFAR-10-C available once (official files or generated)."""

from robustflow.device import configure_threads
from robustflow.io import log_to
from robustflow.studies.architecture_study import prepare_cifar10c

with log_to(snakemake.log[0]):
    configure_threads(snakemake.threads)
    prepare_cifar10c(snakemake.params.config, snakemake.params.root)
