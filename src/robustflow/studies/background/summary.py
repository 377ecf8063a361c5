"""The background study's aggregate and figure steps: accuracy per variation, both background gaps, TracIn proponent shares, summaries over seeds, claims, figures and image grids.

Imports no torch: these jobs read tables and draw figures, so they start in well under the
time of a bare ``import torch`` (see ``benchmarks/job_overhead.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from robustflow.io import concat_tables, write_csv
from robustflow.stats import summarise
from robustflow.studies.background.claims import claims_table
from robustflow.studies.background.plan import GAP_COLUMNS, GAP_LABELS, RUN_COLUMNS


def load_samples(path: str | Path) -> dict:
    """An .npz written by `evaluate` or `influence` as a dict of arrays (0-d ones as scalars)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: (data[k].item() if data[k].ndim == 0 else data[k]) for k in data.files}


def gap_columns() -> list[str]:
    """Both gaps in top-1 (named as in `GAP_COLUMNS`) and in top-5 (the same names + ``_top5``)."""
    return [*GAP_COLUMNS, *(f"{column}_top5" for column in GAP_COLUMNS)]


def run_gaps(accuracy: pd.DataFrame) -> pd.DataFrame:
    """One row per run: top-1 per variation (a column per variation) and both background gaps,
    in top-1 and in top-5 (fractions)."""
    # Pivot on the run id alone: the other run columns hold NaN (reg_coeff of non-paired runs).
    top1 = accuracy.pivot_table(index="run", columns="variation", values="top1")
    top5 = accuracy.pivot_table(index="run", columns="variation", values="top5")
    wide = top1.reset_index()
    wide.columns.name = None
    wide = accuracy[RUN_COLUMNS].drop_duplicates("run").merge(wide, on="run")
    for column, (high, low) in GAP_COLUMNS.items():
        for table, name in ((top1, column), (top5, f"{column}_top5")):
            present = {high, low} <= set(table.columns)
            wide[name] = (table[high] - table[low]).reindex(wide["run"]).to_numpy() if present else math.nan
    return wide


def proponent_shares(influence: pd.DataFrame) -> pd.DataFrame:
    """Per run: the fraction of TracIn proponents that share the explained test image's label,
    and that share its background class (NaN where background classes are unknown, as on the
    real challenge). A background-reliant model's proponents share the background, not the label."""
    proponents = influence[influence["kind"] == "proponent"]
    known = (proponents["train_background_class"] >= 0) & (proponents["test_background_class"] >= 0)
    same_background = proponents["train_background_class"] == proponents["test_background_class"]
    proponents = proponents.assign(
        same_label=(proponents["train_label"] == proponents["test_label"]).astype(float),
        same_background=same_background.astype(float).where(known),
    )
    shares = proponents.groupby("run").agg(n_proponents=("rank", "size"), same_label=("same_label", "mean"),
                                           same_background=("same_background", "mean")).reset_index()
    runs = influence[RUN_COLUMNS].drop_duplicates("run")
    return runs.merge(shares, on="run", how="left").fillna({"n_proponents": 0})


def aggregate(config: dict, job: dict, inputs, outputs) -> None:
    """Join the per-run tables; summarise over seeds (mean, 95% t-interval); judge the claims."""
    accuracy, history, influence = (concat_tables(getattr(inputs, name)) for name in ("accuracy", "history", "influence"))
    accuracy["reg_coeff"] = accuracy["reg_coeff"].astype(float)
    gaps = run_gaps(accuracy)
    write_csv(accuracy, outputs.accuracy)
    write_csv(history, outputs.history)
    write_csv(influence, outputs.influence)
    write_csv(proponent_shares(influence), outputs.proponents)
    write_csv(gaps, outputs.gaps)
    write_csv(summarise(accuracy, by=["model", "label", "variation"], values=["top1", "top5", "fg_share"]),
              outputs.summary)
    gap_summary = summarise(gaps, by=["model", "label"], values=gap_columns())
    definitions = "; ".join(f"{k} = {v}" for k, v in GAP_LABELS.items())
    gap_summary.insert(2, "gap_definitions", f"{definitions} (top-1; *_top5: the same in top-5)")
    write_csv(gap_summary, outputs.gap_summary)
    write_csv(claims_table(gaps, config), outputs.claims)


def figure(config: dict, job: dict, inputs, outputs) -> None:
    """Draw the table figure ``job["figure"]`` from the aggregated tables."""
    from robustflow.plots.background import FIGURES
    from robustflow.plots.style import save_figure

    tables = {name: pd.read_csv(getattr(inputs, name)) for name in ("accuracy", "gaps")}
    save_figure(FIGURES[job["figure"]](tables, config), outputs.pdf, outputs.png)


def saliency_grid(config: dict, job: dict, inputs, outputs) -> None:
    """Saliency maps of one model's training methods on the same mixed_rand images."""
    from robustflow.plots.background import saliency_grid as draw
    from robustflow.plots.style import save_figure

    save_figure(draw([load_samples(path) for path in inputs.saliency], job["model"]), outputs.pdf, outputs.png)


def influence_grid(config: dict, job: dict, inputs, outputs) -> None:
    """Test images and their top TracIn proponents, for the model's influence run."""
    from robustflow.plots.background import influence_grid as draw
    from robustflow.plots.style import save_figure

    save_figure(draw(load_samples(inputs.samples[0]), job["model"]), outputs.pdf, outputs.png)
