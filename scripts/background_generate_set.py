"""Snakemake adapter: build the background study's image set (generated, or read from bg_challenge)."""

from robustflow.device import configure_threads
from robustflow.io import log_to
from robustflow.studies.background_study import generate_set

with log_to(snakemake.log[0]):
    configure_threads(snakemake.threads)
    generate_set(snakemake.params.config, snakemake.output.dataset)
