"""Snakemake adapter: join the background-study runs, compute both gaps, judge the claims."""

from robustflow.io import log_to
from robustflow.studies.background_study import aggregate

with log_to(snakemake.log[0]):
    output = snakemake.output
    aggregate(
        snakemake.input.accuracy,
        snakemake.input.history,
        snakemake.input.influence,
        accuracy_out=output.accuracy,
        history_out=output.history,
        influence_out=output.influence,
        gaps_out=output.gaps,
        summary_out=output.summary,
        gap_summary_out=output.gap_summary,
        claims_out=output.claims,
        proponents_out=output.proponents,
        cfg=snakemake.params.config,
    )
