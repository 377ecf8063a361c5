"""Snakemake adapter: join per-run tables, summarise over seeds, judge the claims."""

from robustflow.io import log_to
from robustflow.studies.loss_study import aggregate

with log_to(snakemake.log[0]):
    aggregate(
        snakemake.input.history,
        snakemake.input.noise,
        snakemake.input.confidence,
        history_out=snakemake.output.history,
        noise_out=snakemake.output.noise,
        confidence_out=snakemake.output.confidence,
        summary_out=snakemake.output.summary,
        claims_out=snakemake.output.claims,
        config=snakemake.params.config,
    )
