"""Snakemake adapter: TracIn proponents and opponents of one run's misclassified mixed_rand images."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.background_study import influence_for_model

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)
    configure_threads(snakemake.threads)
    influence_for_model(
        snakemake.params.config,
        snakemake.params.model_spec,
        snakemake.params.run,
        set_path=snakemake.input.dataset,
        model_path=snakemake.input.model,
        checkpoint_dir=snakemake.params.checkpoint_dir,
        influence_path=snakemake.output.influence,
        samples_path=snakemake.output.samples,
    )
