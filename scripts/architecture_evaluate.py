"""Snakemake adapter: Exp 2, evaluate one run on every corruption x severity."""

import sys

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.studies.architecture_study import evaluate_corruptions

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    claim_gpu_slot(snakemake.resources.gpu)
    configure_threads(snakemake.threads)
    evaluate_corruptions(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.input.model,
        cifar10c_manifest=snakemake.input.manifest,
        out_csv=snakemake.output.robustness,
    )
