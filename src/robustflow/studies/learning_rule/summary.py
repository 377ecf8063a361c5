"""The learning-rule study's aggregate and figure steps: tables over cells, summaries over seeds, claims, figures.

Imports no torch: these jobs read tables and draw figures, so they start in well under the
time of a bare ``import torch`` (see ``benchmarks/job_overhead.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from robustflow.io import concat_tables, write_csv
from robustflow.stats import summarise
from robustflow.studies.learning_rule.claims import claims_table
from robustflow.studies.learning_rule.plan import (
    CELL_COLUMNS,
    WEIGHT_COLUMNS,
    task_description,
)

SUMMARY_VALUES = ["accuracy", "output_ratio", "margin_snr", "normalized_margin", *WEIGHT_COLUMNS]


def aggregate(config: dict, job: dict, inputs, outputs) -> None:
    """Join the cells' tables, summarise over seeds (mean, 95% t-interval), and judge the claims.

    Only a user's own road-image folder is the source's task: on any other task the magnitudes
    are "not comparable" and only the directional claims are judged.
    """
    metrics = concat_tables(inputs.metrics)
    label, comparable = task_description(config["learning_rule_study"]["task"])
    claims = claims_table(metrics, dataset_label=label, comparable=comparable)
    write_csv(metrics, outputs.metrics)
    write_csv(concat_tables(inputs.noise), outputs.noise)
    write_csv(concat_tables(inputs.sweep), outputs.sweep)
    write_csv(summarise(metrics, by=CELL_COLUMNS, values=SUMMARY_VALUES), outputs.summary)
    write_csv(claims, outputs.claims)


def figure(config: dict, job: dict, inputs, outputs) -> None:
    """Draw the figure ``job["figure"]``; the weights of each cell come in cell order."""
    from robustflow.plots.learning_rule import FIGURES
    from robustflow.plots.style import save_figure

    tables = {name: pd.read_csv(getattr(inputs, name)) for name in ("metrics", "noise", "sweep")}
    tables["weights"] = {Path(path).parent.name: np.load(path) for path in inputs.weights}
    save_figure(FIGURES[job["figure"]](tables, config), outputs.pdf, outputs.png)
