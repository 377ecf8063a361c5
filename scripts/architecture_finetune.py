"""Snakemake adapter: Exp 3, fine-tune one run on a group of CIFAR-10-C corruptions."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.architecture_study import finetune_corruptions

with log_to(snakemake.log[0]):
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
