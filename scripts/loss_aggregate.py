"""Snakemake adapter: join per-run tables, summarise over seeds, judge the claims."""

import sys

from robustflow.studies.loss_study import aggregate

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
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
