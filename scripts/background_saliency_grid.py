"""Snakemake adapter: the background study's saliency_grid step."""

from robustflow.jobs import run_step
from robustflow.studies.background.summary import saliency_grid

run_step(snakemake, saliency_grid)
