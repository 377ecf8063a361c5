"""Snakemake adapter: draw one architecture-study figure."""

import sys

import pandas as pd

from robustflow.plots.architecture import FIGURES
from robustflow.plots.style import save_figure

with open(snakemake.log[0], "w") as log:
    sys.stderr = log
    tables = {name: pd.read_csv(path) for name, path in snakemake.input.items()}
    figure = FIGURES[snakemake.wildcards.figure](tables, snakemake.params.config)
    save_figure(figure, snakemake.output.pdf, snakemake.output.png)
