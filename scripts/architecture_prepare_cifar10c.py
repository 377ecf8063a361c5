"""Snakemake adapter: make CIFAR-10-C available once (official files or generated)."""

import sys

from robustflow.device import configure_threads
from robustflow.studies.architecture_study import prepare_cifar10c

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    configure_threads(snakemake.threads)
    prepare_cifar10c(snakemake.params.config, snakemake.params.root)
