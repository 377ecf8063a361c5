"""Snakemake adapter: pretrain one model on the disjoint source task (offline pretrained arm)."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.architecture_study import pretrain_source

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    pretrain_source(
        snakemake.params.config,
        snakemake.wildcards.model,
        int(snakemake.wildcards.seed),
        out_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
    )
