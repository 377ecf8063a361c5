"""Snakemake adapter: train and evaluate one method x constraint cell over all seeds."""

import sys

from robustflow.device import configure_threads
from robustflow.studies.learning_rule_study import run_cell

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    configure_threads(snakemake.threads)
    run_cell(
        snakemake.params.study,
        snakemake.wildcards.method,
        snakemake.params.constraint,
        metrics_path=snakemake.output.metrics,
        noise_path=snakemake.output.noise,
        sweep_path=snakemake.output.sweep,
        weights_path=snakemake.output.weights,
    )
