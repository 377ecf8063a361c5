"""Snakemake adapter: train one background-study run (standard, mixed_rand or Robustar-paired)."""

from robustflow.device import claim_gpu_slot, configure_threads
from robustflow.io import log_to
from robustflow.studies.background_study import train_model

with log_to(snakemake.log[0]):
    claim_gpu_slot(snakemake.resources.gpu)  # before anything touches CUDA
    configure_threads(snakemake.threads)
    run = snakemake.params.run
    train_model(
        snakemake.params.config,
        snakemake.params.model_spec,
        run["method"],
        run["reg_coeff"],
        run["pair_mode"],
        run["seed"],
        set_path=snakemake.input.dataset,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_dir=snakemake.params.checkpoint_dir,
    )
