"""Snakemake adapter: accuracy, foreground share and saliency samples of one run on every variation."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.background_study import evaluate_model

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)
    configure_threads(snakemake.threads)
    evaluate_model(
        snakemake.params.config,
        snakemake.params.model_spec,
        snakemake.params.run,
        set_path=snakemake.input.dataset,
        model_path=snakemake.input.model,
        accuracy_path=snakemake.output.accuracy,
        saliency_path=snakemake.output.saliency,
    )
