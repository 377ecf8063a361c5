"""Figures of the architecture study (source 002). Accuracies are top-1 fractions; lines show
the mean over seeds (and, where stated, the spread over corruptions)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from robustflow.plots.style import (
    FULL_WIDTH_IN,
    apply_style,
    declare_bounds,
    legend_outside,
    log_scale,
    nothing_to_show,
)
from robustflow.stats import interval_for, proportion_interval, t_interval
from robustflow.studies.architecture.plan import CLEAN


def training_curves(history: pd.DataFrame) -> plt.Figure:
    """Train and validation top-1 and loss against epoch, one colour per variant (Exp 1)."""
    apply_style()
    long = pd.concat([
        history.assign(split="train", top1=history["train_top1"], loss=history["train_loss"]),
        history.assign(split="val", top1=history["val_top1"], loss=history["val_loss"]),
    ], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 2.6), constrained_layout=True)
    for ax, (column, label) in zip(axes, [("top1", "top-1 accuracy (fraction)"),
                                          ("loss", "cross-entropy loss (nats)")]):
        sns.lineplot(data=long, x="epoch", y=column, hue="variant", style="split",
                     errorbar=interval_for(column), ax=ax)
        ax.set(xlabel="epoch", ylabel=label)
    declare_bounds(axes[0], "y")
    log_scale(axes[1], "y")
    legend_outside(fig, axes[0], title="variant / split\n(line: mean over seeds;\nband: 95% t-interval)")
    return fig


def severity_curves(robustness: pd.DataFrame) -> plt.Figure:
    """Top-1 against severity (0 = clean) per variant: mean over corruptions, band = the range of
    the per-corruption accuracies (Exp 2)."""
    apply_style()
    per_corruption = robustness.groupby(["variant", "corruption", "severity"], as_index=False)["top1"].mean()
    clean = per_corruption[per_corruption["corruption"] == CLEAN]
    corruptions = sorted(set(per_corruption["corruption"]) - {CLEAN})
    # The clean point belongs to every corruption's curve, so the band starts from it.
    curves = pd.concat([per_corruption[per_corruption["corruption"] != CLEAN],
                        *(clean.assign(corruption=name) for name in corruptions)], ignore_index=True)
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN * 0.6, 2.8), constrained_layout=True)
    sns.lineplot(data=curves, x="severity", y="top1", hue="variant", errorbar=("pi", 100), marker="o",
                 markersize=4, ax=ax)
    ax.set(xlabel="corruption severity (0 = clean test set)", ylabel="top-1 accuracy (fraction)",
           xticks=sorted(curves["severity"].unique()))
    declare_bounds(ax, "y")
    legend_outside(fig, ax, title="variant\n(line: mean over corruptions;\nband: their range)")
    return fig


def corruption_heatmap(robustness: pd.DataFrame) -> plt.Figure:
    """Mean top-1 over severities (and seeds) for each corruption x variant."""
    apply_style()
    corrupted = robustness[robustness["corruption"] != CLEAN]
    table = corrupted.pivot_table(index="corruption", columns="variant", values="top1", aggfunc="mean")
    fig, ax = plt.subplots(figsize=(1.2 + 1.0 * table.shape[1], 0.9 + 0.28 * table.shape[0]),
                           constrained_layout=True)
    sns.heatmap(table, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=ax,
                cbar_kws={"label": "top-1 accuracy (fraction), mean over severities"}, annot_kws={"size": 6})
    ax.set(xlabel="variant", ylabel="corruption")
    return fig


def finetune_improvement(finetune: pd.DataFrame) -> plt.Figure:
    """Test top-1 on the fine-tuning test images before and after fine-tuning, and the gain
    per corruption (points), per variant (Exp 3). Without fine-tuning (``finetune.corruptions: []``)
    a panel says so; the plan does not target this figure then."""
    apply_style()
    if finetune.empty:
        return nothing_to_show("no fine-tuning corruption in this study (finetune.corruptions is empty)", "variant",
                               "test top-1 on corrupted images (fraction)")
    per_corruption = finetune.groupby(["variant", "seed", "corruption"], as_index=False)[
        ["top1_before", "top1", "top1_improvement"]].mean()
    long = pd.concat([per_corruption.assign(stage="before (Exp 2 model)", accuracy=per_corruption["top1_before"]),
                      per_corruption.assign(stage="after fine-tuning", accuracy=per_corruption["top1"])],
                     ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 2.8), constrained_layout=True)
    sns.barplot(data=long, x="variant", y="accuracy", hue="stage", errorbar=proportion_interval, ax=axes[0])
    axes[0].set(xlabel="variant", ylabel="test top-1 on corrupted\nimages (fraction)", ylim=(0, 1))
    declare_bounds(axes[0], "y")
    axes[0].legend(frameon=False, fontsize=6, title="bar: mean; whisker: 95% t-interval", title_fontsize=6)
    sns.stripplot(data=per_corruption, x="variant", y="top1_improvement", hue="corruption", dodge=False, size=3,
                  ax=axes[1])
    sns.pointplot(data=per_corruption, x="variant", y="top1_improvement", color="black", errorbar=t_interval,
                  markers="_", linestyles="none", ax=axes[1])
    axes[1].axhline(0, color="grey", linewidth=0.8)
    axes[1].set(xlabel="variant", ylabel="top-1 gain from fine-tuning\n(difference of fractions)")
    legend_outside(fig, axes[1], title="corruption (points);\nblack: mean, 95% t-interval")
    for ax in axes:
        ax.tick_params(axis="x", rotation=90)
    return fig


def clean_vs_corrupted(runs: pd.DataFrame) -> plt.Figure:
    """Clean top-1 against mean CIFAR-10-C top-1, one point per run; the diagonal is no loss."""
    apply_style()
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN * 0.5, 2.8), constrained_layout=True)
    sns.scatterplot(data=runs, x="clean_top1", y="mean_c_top1", hue="variant", style="family", s=40, ax=ax)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8, label="no robustness loss")
    ax.set(xlabel="clean test top-1 (fraction)", ylabel="mean corrupted top-1 (fraction)", xlim=(0, 1.02),
           ylim=(0, 1.02))
    declare_bounds(ax, "x")
    declare_bounds(ax, "y")
    legend_outside(fig, ax, title="variant")
    return fig


FIGURES = {
    "training_curves": lambda tables, config: training_curves(tables["history"]),
    "severity_curves": lambda tables, config: severity_curves(tables["robustness"]),
    "corruption_heatmap": lambda tables, config: corruption_heatmap(tables["robustness"]),
    "finetune_improvement": lambda tables, config: finetune_improvement(tables["finetune"]),
    "clean_vs_corrupted": lambda tables, config: clean_vs_corrupted(tables["runs"]),
}
