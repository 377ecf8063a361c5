"""Snakemake adapter: Exp 2, evaluate one run on every corruption x severity."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.architecture_study import evaluate_corruptions

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)
    configure_threads(snakemake.threads)
    evaluate_corruptions(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.input.model,
        cifar10c_manifest=snakemake.input.manifest,
        out_csv=snakemake.output.robustness,
    )
