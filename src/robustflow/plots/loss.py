"""Figures of the loss study; lines show the mean over seeds and bands the 95% Student-t interval
over seeds (clipped to [0, 1] for accuracies)."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from robustflow.plots.style import (
    FULL_WIDTH_IN,
    NOISE_LABELS,
    apply_style,
    declare_bounds,
    legend_outside,
    log_scale,
    nothing_to_show,
)
from robustflow.stats import interval_for, is_proportion
from robustflow.studies.loss.claims import reported_rows

BANDS = "variant\n(line: mean over seeds;\nband: 95% t-interval)"


def _bound(ax: plt.Axes, metric: str) -> None:
    if is_proportion(metric.removeprefix("val_")):
        declare_bounds(ax, "y")


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Loss, validation top-1 and validation margin SNR against epoch."""
    apply_style()
    fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH_IN, 2.4), constrained_layout=True)
    panels = [
        ("train_loss", "training loss (own objective)"),
        ("val_top1", "validation top-1 (fraction)"),
        ("val_margin_snr", "validation margin SNR (mean/std)"),
    ]
    for ax, (column, label) in zip(axes, panels):
        sns.lineplot(data=history, x="epoch", y=column, hue="variant", errorbar=interval_for(column.removeprefix("val_")), ax=ax)
        _bound(ax, column)
        ax.set(xlabel="epoch", ylabel=label)
    log_scale(axes[0], "y")
    legend_outside(fig, axes[0], BANDS)
    return fig


def robustness_curves(noise: pd.DataFrame) -> plt.Figure:
    """Top-1 and margin SNR against noise level, one column per noise type."""
    apply_style()
    rows = reported_rows(noise)
    types = list(dict.fromkeys(rows["noise"]))
    fig, axes = plt.subplots(2, len(types), figsize=(FULL_WIDTH_IN, 4.2), sharex="col", sharey="row",
                             squeeze=False, constrained_layout=True)
    for column, noise_type in enumerate(types):
        subset = rows[rows["noise"] == noise_type]
        for row, (metric, label) in enumerate([("top1", "test top-1 (fraction)"),
                                                ("margin_snr", "margin SNR (mean/std)")]):
            ax = axes[row, column]
            sns.lineplot(data=subset, x="level", y=metric, hue="variant", errorbar=interval_for(metric.removeprefix("val_")),
                         marker="o", markersize=3, ax=ax)
            _bound(ax, metric)
            xlabel = textwrap.fill(NOISE_LABELS[noise_type], 20)  # two lines: four panels share the width
            ax.set(xlabel=xlabel if row == 1 else "", ylabel=label if column == 0 else "")
            if row == 0:  # short: four panels share the width; the suptitle says what they are
                ax.set_title(noise_type.replace("_", " "))
    fig.suptitle("Test set with added noise, one panel per noise type", fontsize=8)
    legend_outside(fig, axes[0, 0], BANDS)
    return fig


def lambda_ablation(noise: pd.DataFrame, baseline: str) -> plt.Figure:
    """Clean-test margin SNR and top-1 of the margin loss against lambda (log x; symlog when
    lambda 0 is swept). A sweep without the clean level or a plain margin variant (no EMA, no
    mixup) gets a panel that says so; the plan does not target this figure for such a sweep."""
    apply_style()
    xlabel = "margin target lambda\n(logit units, log scale)"
    clean = reported_rows(noise)
    clean = clean[clean["level"] == 0]
    if clean.empty:
        return nothing_to_show("the sweep has no clean test set (noise level 0)", xlabel, "clean margin SNR")
    clean = clean[clean["noise"] == clean["noise"].iloc[0]]
    margin = clean[(clean["loss"] == "margin") & (~clean["ema"].astype(bool)) & (clean["mixup_alpha"] == 0)]
    if margin.empty:
        return nothing_to_show("the sweep has no margin-loss variant without EMA or mixup", xlabel,
                               "clean margin SNR")
    positive = margin.loc[margin["margin_lambda"] > 0, "margin_lambda"]
    linthresh = float(positive.min()) if len(positive) else 1.0
    if len(positive) < len(margin):  # log scale cannot show lambda 0
        xlabel = "margin target lambda\n(logit units, symlog scale)"
    base = clean[clean["variant"] == baseline]
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN * 0.75, 2.6), constrained_layout=True)
    for ax, (metric, label) in zip(axes, [("margin_snr", "clean margin SNR (mean/std)"),
                                          ("top1", "clean test top-1 (fraction)")]):
        sns.lineplot(data=margin, x="margin_lambda", y=metric, errorbar=interval_for(metric.removeprefix("val_")), marker="o", ax=ax,
                     label="margin loss")
        if len(base):
            low, high = interval_for(metric.removeprefix("val_"))(base[metric])
            ax.axhline(base[metric].mean(), color="grey", linestyle="--", label=f"{baseline} (baseline)")
            ax.axhspan(low, high, color="grey", alpha=0.15, label=f"{baseline}: 95% t-interval")
        _bound(ax, metric)
        if len(positive) < len(margin):
            ax.set_xscale("symlog", linthresh=linthresh)
        else:
            log_scale(ax, "x")
        ax.set(xlabel=xlabel, ylabel=label, title="clean test set")
    legend_outside(fig, axes[0], "line: mean over seeds;\nband: 95% t-interval")
    return fig


def confidence_distributions(confidence: pd.DataFrame) -> plt.Figure:
    """Clean-test distributions of max-softmax confidence and logit margin per variant."""
    apply_style()
    rows = reported_rows(confidence)
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 2.8), constrained_layout=True)
    sns.boxplot(data=rows, y="variant", x="confidence", ax=axes[0], fliersize=1, linewidth=0.6)
    axes[0].set(xlabel="max softmax probability (clean test)", ylabel="variant")
    sns.boxplot(data=rows, y="variant", x="margin", ax=axes[1], fliersize=1, linewidth=0.6)
    axes[1].set(xlabel="logit margin z_y - max other (logit units)", ylabel="")
    axes[1].set_yticklabels([])
    return fig


FIGURES = {
    "training_curves": lambda tables, config: training_curves(tables["history"]),
    "robustness_curves": lambda tables, config: robustness_curves(tables["noise"]),
    "lambda_ablation": lambda tables, config: lambda_ablation(tables["noise"], config["loss_study"]["baseline"]),
    "confidence": lambda tables, config: confidence_distributions(tables["confidence"]),
}
