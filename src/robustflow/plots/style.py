"""Shared figure style and atomic PDF + PNG output."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run headless
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from robustflow.io import atomic_path  # noqa: E402

# A two-column paper's full width is ~7 in; fonts stay >= 8 pt at that size.
FULL_WIDTH_IN = 7.0

# Axis labels that say what a noise level means for each noise type.
NOISE_LABELS = {
    "gaussian": "noise std (of [0, 1] pixels)",
    "salt_pepper": "pixel fraction flipped",
    "fog": "fog blend weight",
    "occlusion": "occluded area fraction",
}


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "legend.fontsize": 7})


def legend_outside(fig: plt.Figure, ax: plt.Axes, title: str = "variant") -> None:
    """One legend for the whole figure, right of the panels (taken from `ax`)."""
    handles, labels = ax.get_legend_handles_labels()
    for axis in fig.axes:
        if axis.get_legend() is not None:
            axis.get_legend().remove()
    fig.legend(handles, labels, title=title, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def nothing_to_show(reason: str, xlabel: str = "", ylabel: str = "") -> plt.Figure:
    """A one-panel figure that says plainly that there is nothing to draw, and why (``reason``),
    for a figure asked for on a sweep that lacks its subject."""
    apply_style()
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN * 0.5, 2.0), constrained_layout=True)
    ax.text(0.5, 0.5, "nothing to show:\n" + textwrap.fill(reason, 40), ha="center", va="center",
            transform=ax.transAxes, fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, xticks=[], yticks=[])
    return fig


def save_figure(fig: plt.Figure, pdf_path: str | Path, png_path: str | Path) -> None:
    for path in (pdf_path, png_path):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=300)
    plt.close(fig)
