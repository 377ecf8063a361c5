"""The repeatability study's aggregate and figure steps: FR/mFR, CE/mCE, agreement across seeds, summaries over seeds, claims, figures.

Imports no torch: these jobs read tables and draw figures, so they start in well under the
time of a bare ``import torch`` (see ``benchmarks/job_overhead.py``).
"""

from __future__ import annotations

import pandas as pd

from robustflow.io import concat_tables, write_csv
from robustflow.studies.repeatability.claims import claims_table, run_summary
from robustflow.studies.repeatability.plan import RUN_COLUMNS

TABLES = ("history", "perturbations", "shifts", "corruptions", "predictions", "translate")


def aggregate(config: dict, job: dict, inputs, outputs) -> None:
    """Join the per-run tables; FR/mFR and CE/mCE against the baseline variant of the same seed;
    agreement across seeds; summaries over seeds (mean, 95% t-interval); the claims."""
    from robustflow.stats import summarise

    tables = {name: concat_tables(getattr(inputs, name)) for name in TABLES}
    runs, perturbations, agreement = run_summary(tables, config["repeatability_study"]["baseline"])
    for name in ("history", "shifts", "corruptions", "translate"):
        write_csv(tables[name], getattr(outputs, name))
    write_csv(perturbations, outputs.perturbations)
    write_csv(runs, outputs.runs)
    write_csv(agreement, outputs.agreement)
    values = [c for c in runs.columns if c not in (*RUN_COLUMNS, "n_rated")]
    write_csv(summarise(runs, by=["variant", "model", "method"], values=values), outputs.summary)
    write_csv(claims_table(runs, tables["history"], config), outputs.claims)


def figure(config: dict, job: dict, inputs, outputs) -> None:
    """Draw the figure ``job["figure"]`` from the aggregated tables."""
    from robustflow.plots.repeatability import FIGURES
    from robustflow.plots.style import save_figure

    tables = {name: pd.read_csv(getattr(inputs, name))
              for name in ("perturbations", "translate", "shifts", "runs", "agreement")}
    save_figure(FIGURES[job["figure"]](tables, config), outputs.pdf, outputs.png)
