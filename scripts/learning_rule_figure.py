"""Snakemake adapter: draw one learning-rule figure."""

import numpy as np
import pandas as pd

from robustflow.io import log_to
from robustflow.plots.learning_rule import FIGURES
from robustflow.plots.style import save_figure

with log_to(snakemake.log[0]):
    tables = {name: pd.read_csv(snakemake.input[name]) for name in ("metrics", "noise", "sweep")}
    tables["weights"] = {
        cell: np.load(path) for cell, path in zip(snakemake.params.cells, snakemake.input.weights)
    }
    figure = FIGURES[snakemake.wildcards.figure](tables, snakemake.params.config)
    save_figure(figure, snakemake.output.pdf, snakemake.output.png)
