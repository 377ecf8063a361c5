"""Snakemake adapter: Exp 1, train one architecture-study run."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.architecture_study import train_model

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    train_model(
        snakemake.params.config,
        snakemake.params.run,
        out_model=snakemake.output.model,
        out_history=snakemake.output.history,
        out_test=snakemake.output.test,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        pretrained_path=snakemake.input.pretrained or None,
    )
