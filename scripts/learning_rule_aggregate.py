"""Snakemake adapter: join the learning-rule cells, summarise over seeds, judge the claims."""

from robustflow.io import log_to
from robustflow.studies.learning_rule_study import aggregate, task_description

with log_to(snakemake.log[0]):
    label, comparable = task_description(snakemake.params.task)
    aggregate(
        snakemake.input.metrics,
        snakemake.input.noise,
        snakemake.input.sweep,
        metrics_out=snakemake.output.metrics,
        noise_out=snakemake.output.noise,
        sweep_out=snakemake.output.sweep,
        summary_out=snakemake.output.summary,
        claims_out=snakemake.output.claims,
        claims_md_out=snakemake.output.claims_md,
        dataset_label=label,
        comparable=comparable,
    )
