"""Snakemake adapter: the background study's influence_grid step."""

from robustflow.jobs import run_step
from robustflow.studies.background.summary import influence_grid

run_step(snakemake, influence_grid)
