"""Snakemake adapter: train one loss-study run."""

import sys

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.studies.loss_study import train_run

with open(snakemake.log[0], "w") as log:
    sys.stderr = log  # tqdm and warnings go to the rule's log
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    train_run(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
    )
