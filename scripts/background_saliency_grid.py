"""Snakemake adapter: saliency maps of one model's training methods on the same mixed_rand images."""

from robustflow.io import log_to
from robustflow.plots.background import saliency_grid
from robustflow.plots.style import save_figure
from robustflow.studies.background_study import load_samples

with log_to(snakemake.log[0]):
    figure = saliency_grid([load_samples(path) for path in snakemake.input.saliency])
    save_figure(figure, snakemake.output.pdf, snakemake.output.png)
