"""Figures of the background study; bars show the mean over seeds and whiskers the 95% Student-t
interval over seeds (clipped to [0, 1] for accuracies and shares)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from robustflow.data_files import BG_CHALLENGE_VARIATIONS as VARIATIONS
from robustflow.plots.style import (
    FULL_WIDTH_IN,
    apply_style,
    declare_bounds,
    legend_outside,
    nothing_to_show,
)
from robustflow.stats import proportion_interval, t_interval
from robustflow.studies.background.plan import GAP_COLUMNS, GAP_LABELS

WHISKERS = "(bar: mean over seeds;\nwhisker: 95% t-interval)"
TRACIN_UNITS = "TracIn score: sum over epochs of lr x last-layer gradient dot product (loss units^2)"


def _variation_bars(accuracy: pd.DataFrame, value: str, ylabel: str, what: str) -> plt.Figure:
    """One panel per model: ``value`` (a proportion) per test variation, a bar per training method."""
    apply_style()
    models = list(dict.fromkeys(accuracy["model"]))
    order = [v for v in VARIATIONS if v in set(accuracy["variation"])]
    fig, axes = plt.subplots(len(models), 1, figsize=(FULL_WIDTH_IN, 2.2 * len(models)), squeeze=False,
                             sharex=True, constrained_layout=True)
    for ax, model in zip(axes[:, 0], models):
        sns.barplot(data=accuracy[accuracy["model"] == model], x="variation", y=value, hue="label", order=order,
                    errorbar=proportion_interval, ax=ax, err_kws={"linewidth": 0.8}, capsize=0.1)
        declare_bounds(ax, "y")
        ax.set(title=f"model {model}: {what} per test variation", xlabel="", ylabel=ylabel)
    axes[-1, 0].set_xlabel("test variation")
    axes[-1, 0].tick_params(axis="x", rotation=90)
    legend_outside(fig, axes[0, 0], "training method\n" + WHISKERS)
    return fig


def accuracy_per_variation(accuracy: pd.DataFrame) -> plt.Figure:
    """Test top-1 on every variation, one panel per model, one bar per training method."""
    return _variation_bars(accuracy, "top1", "test top-1\n(fraction)", "test top-1")


def foreground_share_per_variation(accuracy: pd.DataFrame) -> plt.Figure:
    """Fraction of gradient-saliency mass inside the foreground mask, per variation and method
    (without test masks, as on a challenge release lacking fg_mask/val, a panel says so)."""
    ylabel = "saliency inside\nforeground (fraction)"
    if accuracy["fg_share"].isna().all():
        return nothing_to_show("no foreground masks of the test images (fg_mask/val), so no foreground share",
                               "test variation", ylabel)
    return _variation_bars(accuracy, "fg_share", ylabel, "gradient-saliency mass inside the foreground mask")


def gap_per_method(gaps: pd.DataFrame) -> plt.Figure:
    """Both background gaps per training method and model (bars: mean, whiskers: 95% t-interval)."""
    apply_style()
    fig, axes = plt.subplots(1, len(GAP_COLUMNS), figsize=(FULL_WIDTH_IN, 2.6), sharey=True, constrained_layout=True)
    for ax, column in zip(axes, GAP_COLUMNS):
        sns.barplot(data=gaps, x="label", y=column, hue="model", errorbar=t_interval, ax=ax,
                    err_kws={"linewidth": 0.8}, capsize=0.1)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set(title=GAP_LABELS[column], xlabel="training method", ylabel="top-1 gap\n(difference of fractions)")
        ax.tick_params(axis="x", rotation=90)
    legend_outside(fig, axes[0], "model\n" + WHISKERS)
    return fig


def _hide_ticks(ax: plt.Axes) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.transpose(image, (1, 2, 0))


def overlay_image(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """An RGB (H, W, 3) float array in [0, 1]: the image blended with the saliency as a red heat layer.

    ``image`` is one (C, H, W) uint8 or [0, 1] float image, ``saliency`` one (H, W) map
    (scaled by its maximum, so maps of different images are each shown at full range).
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image.ndim != 3 or saliency.shape != image.shape[1:]:
        raise ValueError(f"image must be (C, H, W) and saliency (H, W) of the same size, got "
                         f"{image.shape} and {saliency.shape}")
    picture = image / 255.0 if image.dtype == np.uint8 else image.astype(float)
    picture = np.repeat(picture, 3, axis=0) if picture.shape[0] == 1 else picture
    weight = alpha * saliency.astype(float)[None] / max(float(saliency.max()), 1e-12)
    red = np.zeros_like(picture)
    red[0] = 1.0
    return np.clip((1 - weight) * picture + weight * red, 0, 1).transpose(1, 2, 0)


def saliency_grid(samples: dict | Sequence[dict], model: str, variation: str = "mixed_rand",
                  rows: int = 6) -> plt.Figure:
    """Sample test images of ``variation`` and the saliency of each run on them (red = salient).

    ``samples`` are dicts from `robustflow.studies.background.summary.load_samples` (the evaluate
    step's .npz: images (V, N, C, H, W) and their saliency (V, N, H, W)), one per run (e.g.
    standard vs paired); each image is shown blended with its saliency, the mask outline marks
    the foreground.
    """
    runs = [samples] if isinstance(samples, dict) else list(samples)
    first = runs[0]
    v = list(first["variations"]).index(variation)
    n = min(rows, len(first["labels"]))
    apply_style()
    fig, axes = plt.subplots(n, 1 + len(runs), figsize=(1.2 * (1 + len(runs)), 1.25 * n), squeeze=False,
                             constrained_layout=True)
    for r in range(n):
        axes[r, 0].imshow(_rgb(first["images"][v, r]))
        axes[r, 0].set_ylabel(f"y={first['classes'][first['labels'][r]]}", fontsize=7)
        for c, run in enumerate(runs, start=1):
            axes[r, c].imshow(overlay_image(run["images"][v, r], run["saliency"][v, r]))
            if run["masks"].size:
                axes[r, c].contour(run["masks"][r], levels=[0.5], colors="white", linewidths=0.5)
            axes[r, c].set_title(f"pred {run['classes'][run['predictions'][v, r]]}", fontsize=6)
        for ax in axes[r]:
            _hide_ticks(ax)
    axes[0, 0].set_title(f"{variation}\ntest image", fontsize=6)
    for c, run in enumerate(runs, start=1):
        axes[0, c].set_title(f"{run['label']}\npred {run['classes'][run['predictions'][v, 0]]}", fontsize=6)
    fig.suptitle(textwrap.fill(f"Model {model}: gradient saliency (red, scaled per image) per training "
                               "method; white: foreground mask", 20 * (1 + len(runs))), fontsize=6)
    return fig


def influence_grid(samples: dict, model: str, rows: int = 4) -> plt.Figure:
    """Misclassified mixed_rand test images of ``model`` and their strongest TracIn proponents
    among the training images (label and score above each)."""
    apply_style()
    n = min(rows, len(samples["test_labels"]))
    k = samples["proponent_scores"].shape[1] if n else 0
    fig, axes = plt.subplots(max(n, 1), 1 + k, figsize=(1.2 * (1 + max(k, 1)), 1.3 * max(n, 1)), squeeze=False,
                             constrained_layout=True)
    classes = samples["classes"]
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified\nmixed_rand images", ha="center", va="center", fontsize=7)
        _hide_ticks(axes[0, 0])
    for r in range(n):
        axes[r, 0].imshow(_rgb(samples["test_images"][r]))
        axes[r, 0].set_title(f"y={classes[samples['test_labels'][r]]} "
                             f"pred={classes[samples['test_predictions'][r]]}", fontsize=6)
        for c in range(k):
            axes[r, c + 1].imshow(_rgb(samples["proponent_images"][r, c]))
            axes[r, c + 1].set_title(f"y={classes[samples['proponent_labels'][r, c]]} "
                                     f"{samples['proponent_scores'][r, c]:.2g}", fontsize=6)
        for ax in axes[r]:
            _hide_ticks(ax)
    fig.suptitle(textwrap.fill(f"Model {model}, {samples['label']} training: a misclassified mixed_rand test image "
                               f"(label y, prediction), then its top proponents among the training images "
                               f"(label y, score). {TRACIN_UNITS}", 12 * (1 + max(k, 1))), fontsize=6)
    return fig


FIGURES = {
    "accuracy_per_variation": lambda tables, config: accuracy_per_variation(tables["accuracy"]),
    "gap_per_method": lambda tables, config: gap_per_method(tables["gaps"]),
    "foreground_share": lambda tables, config: foreground_share_per_variation(tables["accuracy"]),
}
