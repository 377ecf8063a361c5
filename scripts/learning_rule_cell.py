"""Snakemake adapter: train and evaluate one method x constraint cell over all seeds."""

from robustflow.device import configure_threads
from robustflow.io import log_to
from robustflow.studies.learning_rule_study import run_cell

with log_to(snakemake.log[0]):
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
