"""Snakemake adapter: draw one background-study figure from the aggregated tables."""

import pandas as pd

from robustflow.io import log_to
from robustflow.plots.background import FIGURES
from robustflow.plots.style import save_figure

with log_to(snakemake.log[0]):
    tables = {name: pd.read_csv(path) for name, path in snakemake.input.items()}
    figure = FIGURES[snakemake.wildcards.figure](tables, snakemake.params.config)
    save_figure(figure, snakemake.output.pdf, snakemake.output.png)
