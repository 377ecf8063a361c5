"""The architecture study's aggregate and figure steps: per-run clean and corrupted accuracy, mCE, fine-tuning gains, summaries over seeds, claims, figures.

Imports no torch: these jobs read tables and draw figures, so they start in well under the
time of a bare ``import torch`` (see ``benchmarks/job_overhead.py``).
"""

from __future__ import annotations

import pandas as pd

from robustflow.io import concat_tables, write_csv
from robustflow.robustness_metrics import corruption_errors, mean_corruption_errors
from robustflow.stats import summarise
from robustflow.studies.architecture.claims import claims_table
from robustflow.studies.architecture.plan import CLEAN, RUN_COLUMNS


def run_summary(config: dict, test: pd.DataFrame, robustness: pd.DataFrame, finetune: pd.DataFrame
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per run: clean and mean CIFAR-10-C accuracy, mCE and relative mCE (baseline variant of the
    same seed), and the fine-tuning results; plus the per (run, corruption) CE table."""
    baseline = config["architecture_study"]["baseline"]
    corrupted = robustness[robustness["corruption"] != CLEAN]
    clean = robustness[robustness["corruption"] == CLEAN].set_index("run")
    per_run, per_corruption = [], []
    for seed, rows in corrupted.groupby("seed"):
        if baseline not in set(rows["variant"]):
            raise ValueError(f"architecture_study.baseline {baseline!r} has no results for seed {seed}")
        errors = rows.assign(error=1.0 - rows["top1"], model=rows["variant"])
        clean_errors = {variant: 1.0 - clean.loc[run, "top1"] for variant, run in zip(rows["variant"], rows["run"])}
        summary = mean_corruption_errors(errors, clean_errors, baseline).rename(columns={"model": "variant"})
        per_run.append(summary.assign(seed=seed))
        per_corruption.append(corruption_errors(errors, clean_errors, baseline)
                              .rename(columns={"model": "variant"}).assign(seed=seed))
    table = test.merge(pd.concat(per_run), on=["variant", "seed"])
    table["clean_top1"] = table["run"].map(clean["top1"])
    table["clean_top5"] = table["run"].map(clean["top5"])
    table["mean_c_top1"] = table["mean_accuracy"]
    table["mean_c_top5"] = table["run"].map(corrupted.groupby("run")["top5"].mean())
    if len(finetune):
        tuned = finetune.groupby("run")
        table["finetuned_top1"] = table["run"].map(tuned["top1"].mean())
        table["finetuned_top5"] = table["run"].map(tuned["top5"].mean())
        table["finetune_before_top1"] = table["run"].map(tuned["top1_before"].mean())
        table["finetune_gain_same_images"] = table["finetuned_top1"] - table["finetune_before_top1"]
        # The source's "improvement compared to Exp. 2": fine-tuned mean minus the Exp 2 mean
        # over the same corruption cells (Exp 2 on the full set, Exp 3 on the last 10%).
        cells = corrupted.merge(finetune[["run", "corruption", "severity"]], on=["run", "corruption", "severity"])
        table["finetune_improvement"] = table["finetuned_top1"] - table["run"].map(cells.groupby("run")["top1"].mean())
    per_corruption = pd.concat(per_corruption, ignore_index=True)
    return table, per_corruption


SUMMARY_VALUES = ["test_top1", "test_top5", "test_nll", "clean_top1", "mean_c_top1", "mean_c_top5", "mce",
                  "relative_mce", "finetuned_top1", "finetuned_top5", "finetune_before_top1",
                  "finetune_gain_same_images", "finetune_improvement"]


def _finetune_table(paths) -> pd.DataFrame:
    """The fine-tuning tables joined. Without fine-tuning corruptions there are none, or a job
    per run that wrote a table without rows or header: then an empty table with the run columns."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path))
        except pd.errors.EmptyDataError:  # no rows, no header: that job had no corruption
            continue
    filled = [frame for frame in frames if len(frame)]
    if filled:
        return pd.concat(filled, ignore_index=True)
    return frames[0] if frames else pd.DataFrame(columns=RUN_COLUMNS)


def aggregate(config: dict, job: dict, inputs, outputs) -> None:
    """Join the per-run tables; per-run and per-variant summaries (mean and 95% t-interval over
    seeds); source 002's claims beside the measurements."""
    history, test, robustness = (concat_tables(getattr(inputs, name)) for name in ("history", "test", "robustness"))
    finetune = _finetune_table(inputs.finetune)
    runs, per_corruption = run_summary(config, test, robustness, finetune)
    values = [v for v in SUMMARY_VALUES if v in runs.columns]
    write_csv(history, outputs.history)
    write_csv(robustness, outputs.robustness)
    write_csv(finetune, outputs.finetune)
    write_csv(runs, outputs.runs)
    write_csv(per_corruption, outputs.corruption_errors)
    write_csv(summarise(runs, by=["variant", "model", "family", "init"], values=values), outputs.summary)
    write_csv(claims_table(config, runs, robustness, finetune, history), outputs.claims)


def figure(config: dict, job: dict, inputs, outputs) -> None:
    """Draw the figure ``job["figure"]`` from the aggregated tables."""
    from robustflow.plots.architecture import FIGURES
    from robustflow.plots.style import save_figure

    tables = {name: pd.read_csv(getattr(inputs, name)) for name in ("history", "robustness", "finetune", "runs")}
    save_figure(FIGURES[job["figure"]](tables, config), outputs.pdf, outputs.png)
