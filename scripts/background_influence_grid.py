"""Snakemake adapter: misclassified mixed_rand images and their strongest TracIn proponents."""

from robustflow.io import log_to
from robustflow.plots.background import influence_grid
from robustflow.plots.style import save_figure
from robustflow.studies.background_study import load_samples

with log_to(snakemake.log[0]):
    figure = influence_grid(load_samples(snakemake.input.samples[0]))
    save_figure(figure, snakemake.output.pdf, snakemake.output.png)
