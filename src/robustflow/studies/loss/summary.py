"""The loss study's aggregate and figure steps: tables over runs, summaries over seeds, claims, figures.

Imports no torch: these jobs read tables and draw figures, so they start in well under the
time of a bare ``import torch`` (see ``benchmarks/job_overhead.py``).
"""

from __future__ import annotations

import pandas as pd

from robustflow.io import concat_tables, write_csv
from robustflow.stats import summarise
from robustflow.studies.loss.claims import claims_table

METRICS = ["top1", "top5", "nll", "ece", "mean_confidence", "margin_mean", "margin_std",
           "margin_snr", "normalized_margin", "output_ratio"]


def aggregate(config: dict, job: dict, inputs, outputs) -> None:
    """Join the per-run tables, summarise over seeds (mean and 95% t-interval), judge the claims."""
    history, noise, confidence = (concat_tables(getattr(inputs, name)) for name in ("history", "noise", "confidence"))
    group = ["variant", "loss", "margin_lambda", "ema", "mixup_alpha", "weights", "noise", "level"]
    write_csv(history, outputs.history)
    write_csv(noise, outputs.noise)
    write_csv(confidence, outputs.confidence)
    write_csv(summarise(noise, by=group, values=METRICS), outputs.summary)
    write_csv(claims_table(noise, config), outputs.claims)


def figure(config: dict, job: dict, inputs, outputs) -> None:
    """Draw the figure ``job["figure"]`` from the aggregated tables."""
    from robustflow.plots.loss import FIGURES
    from robustflow.plots.style import save_figure

    tables = {name: pd.read_csv(getattr(inputs, name)) for name in ("history", "noise", "confidence")}
    save_figure(FIGURES[job["figure"]](tables, config), outputs.pdf, outputs.png)
