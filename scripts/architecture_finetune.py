"""Snakemake adapter: Exp 3, fine-tune one run on a group of CIFAR-10-C corruptions."""

import sys

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.studies.architecture_study import finetune_corruptions

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    claim_gpu_slot(snakemake.resources.gpu)
    configure_threads(snakemake.threads)
    finetune_corruptions(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.input.model,
        cifar10c_manifest=snakemake.input.manifest,
        group=snakemake.wildcards.group,
        out_csv=snakemake.output.finetune,
        checkpoint_dir=snakemake.params.checkpoint_dir,
    )
