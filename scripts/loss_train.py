"""Snakemake adapter: train one loss-study run."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.loss_study import train_run

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    train_run(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
    )
