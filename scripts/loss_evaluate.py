"""Snakemake adapter: evaluate one loss-study run under the noise suite."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.loss_study import evaluate_run

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    evaluate_run(
        snakemake.params.config,
        snakemake.params.run,
        model_path=snakemake.input.model,
        noise_path=snakemake.output.noise,
        confidence_path=snakemake.output.confidence,
    )
