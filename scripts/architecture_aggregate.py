"""Snakemake adapter: join the architecture-study runs, summarise, judge seed 002's claims."""

from robustflow.io import log_to
from robustflow.studies.architecture_study import aggregate

with log_to(snakemake.log[0]):
    aggregate(
        snakemake.params.config,
        snakemake.input.history,
        snakemake.input.test,
        snakemake.input.robustness,
        snakemake.input.finetune,
        out_history=snakemake.output.history,
        out_robustness=snakemake.output.robustness,
        out_finetune=snakemake.output.finetune,
        out_runs=snakemake.output.runs,
        out_corruption_errors=snakemake.output.corruption_errors,
        out_summary=snakemake.output.summary,
        out_claims=snakemake.output.claims,
    )
