"""Shared figure style and atomic PDF + PNG output."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs run headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter  # noqa: E402

from robustflow.io import atomic_path  # noqa: E402

# A two-column paper's full width is ~7 in; fonts stay >= 8 pt at that size.
FULL_WIDTH_IN = 7.0

# Axis labels that say what a noise level means for each noise type.
NOISE_LABELS = {
    "gaussian": "noise std (of [0, 1] pixels)",
    "salt_pepper": "pixels set to 0 or 1 (fraction)",
    "fog": "fog blend weight (fraction)",
    "occlusion": "occluded area (fraction)",
}


def apply_style() -> None:
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)
    # Plain tick numbers: no "+1.2" offset and no "1e-3" scale on an axis.
    plt.rcParams.update({"figure.dpi": 150, "savefig.bbox": "tight", "legend.fontsize": 7,
                         "axes.formatter.useoffset": False, "axes.formatter.limits": (-6, 7)})


def log_scale(ax: plt.Axes, which: str = "y") -> None:
    """A log axis whose ticks read as plain numbers ("0.1", "2", "100", not "2x10^0"), with
    unlabelled minor ticks so that labels never crowd a narrow range."""
    axis = _axis(ax, which)
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_formatter(ScalarFormatter())
    axis.set_minor_formatter(NullFormatter())


def note(ax: plt.Axes, text: str) -> None:
    """A grey note in the top left corner of ``ax`` (for what a panel cannot draw, and why)."""
    ax.text(0.02, 0.97, text, transform=ax.transAxes, ha="left", va="top", fontsize=6.5, color="dimgrey",
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1.0})


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


CHECK_ENV = "ROBUSTFLOW_CHECK_FIGURES"  # "1": save_figure refuses a figure with findings
# Axes whose quantity is an index, which has no units.
INDEX_LABELS = {"epoch"}
BOUNDS_ATTRIBUTE = "robustflow_bounds"
SCIENTIFIC = re.compile(r"\\times\s*10|\u00d710|\d[eE][+-]?\d")
PIXEL_SLACK = 1.0  # boxes that merely touch (within a pixel) do not overlap


class FigureCheckError(ValueError):
    """A figure that a reviewer would send back (see `check_figure`)."""


def declare_bounds(ax: plt.Axes, which: str = "y", low: float = 0.0, high: float = 1.0) -> None:
    """Declare that axis ``which`` ("x" or "y") of ``ax`` shows a quantity bounded to [low, high]
    (an accuracy, proportion, probability or flip rate), so `check_figure` finds any drawn
    interval, band or point that leaves it."""
    setattr(_axis(ax, which), BOUNDS_ATTRIBUTE, (low, high))


def _axis(ax: plt.Axes, which: str):
    if which not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {which!r}")
    return ax.xaxis if which == "x" else ax.yaxis


def _shown(artist) -> bool:
    return artist.get_visible() and bool(getattr(artist, "get_text", lambda: "x")().strip())


def _tick_labels(axis) -> list:
    """The tick labels an axis draws: visible, non-empty, at a location inside the view limits."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * max(abs(low), abs(high), 1.0)
    labels = []
    for ticks, locations in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                             (axis.get_minor_ticks(), axis.get_minorticklocs())):
        for tick, location in zip(ticks, locations):
            if low - slack <= location <= high + slack:
                labels += [label for label in (tick.label1, tick.label2) if _shown(label)]
    return labels


def _texts(fig: plt.Figure) -> list[tuple[str, object]]:
    """(description, artist) of every visible text element; a legend counts as one element."""
    texts = [(f"figure text {t.get_text()!r}", t) for t in fig.texts if _shown(t)]
    texts += [("figure legend", legend) for legend in fig.legends if legend.get_visible()]
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        name = f"axes {index}"
        texts += [(f"{name} title {t.get_text()!r}", t) for t in (ax.title, ax._left_title, ax._right_title)
                  if _shown(t)]
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            texts += [(f"{name} {which} label {t.get_text()!r}", t) for t in [axis.label] if _shown(t)]
            texts += [(f"{name} {which} offset {t.get_text()!r}", t) for t in [axis.get_offset_text()] if _shown(t)]
            texts += [(f"{name} {which} tick {t.get_text()!r}", t) for t in _tick_labels(axis)]
        texts += [(f"{name} note {t.get_text()!r}", t) for t in ax.texts if _shown(t)]
        if ax.get_legend() is not None and ax.get_legend().get_visible():
            texts.append((f"{name} legend", ax.get_legend()))
    return texts


def _overlaps(a, b) -> bool:
    return (min(a.x1, b.x1) - max(a.x0, b.x0) > PIXEL_SLACK) and (min(a.y1, b.y1) - max(a.y0, b.y0) > PIXEL_SLACK)


def _overlap_findings(fig: plt.Figure, renderer) -> list[str]:
    boxes = [(name, artist.get_window_extent(renderer)) for name, artist in _texts(fig)]
    return [f"overlap: {a} and {b}" for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
            if _overlaps(box_a, box_b)]


def _notation_findings(fig: plt.Figure) -> list[str]:
    findings = []
    for index, ax in enumerate(fig.axes):
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            offset = axis.get_offset_text()
            if _shown(offset):
                findings.append(f"axes {index} {which}: offset text {offset.get_text()!r} on the axis")
            findings += [f"axes {index} {which}: tick label {t.get_text()!r} in scientific notation"
                         for t in _tick_labels(axis) if SCIENTIFIC.search(t.get_text())]
    return findings


def _numeric(axis) -> bool:
    """Whether the axis shows numbers (not categories or names, which other formatters write)."""
    return isinstance(axis.get_major_formatter(), (ScalarFormatter, LogFormatter))


def _label_findings(fig: plt.Figure) -> list[str]:
    findings = []
    for index, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison:
            continue
        for which, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not _tick_labels(axis):
                continue  # nothing measured along this axis (an image, a hidden shared axis)
            shared = (ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()).get_siblings(ax)
            labels = [_axis(other, which).label for other in shared]
            label = next((t.get_text() for t in labels if _shown(t)), "")
            if not label:
                findings.append(f"axes {index} {which}: an axis with tick labels and no label")
            elif _numeric(axis) and "(" not in label and label.split("\n")[0].strip() not in INDEX_LABELS:
                findings.append(f"axes {index} {which}: label {label!r} names no units in parentheses")
    return findings


def _data_points(ax: plt.Axes, artist) -> np.ndarray:
    """(N, 2) data coordinates of what ``artist`` draws (lines, bands, error bars, patches, points)."""
    if isinstance(artist, PathCollection):  # markers: their offsets are the data
        display = artist.get_offset_transform().transform(np.asarray(artist.get_offsets(), dtype=float))
    elif hasattr(artist, "get_paths"):
        transform = artist.get_transform()
        parts = [transform.transform(path.vertices) for path in artist.get_paths() if len(path.vertices)]
        display = np.concatenate(parts) if parts else np.empty((0, 2))
    elif hasattr(artist, "get_xydata"):
        display = artist.get_transform().transform(np.asarray(artist.get_xydata(), dtype=float))
    else:
        display = artist.get_transform().transform(artist.get_path().vertices)
    return ax.transData.inverted().transform(display) if len(display) else display


def _in_data_coordinates(ax: plt.Axes, artist) -> tuple[bool, bool]:
    """Whether the artist's x and y are data values (not fractions of the axes)."""
    transform = artist.get_offset_transform() if isinstance(artist, PathCollection) else artist.get_transform()
    return tuple(transform.contains_branch_seperately(ax.transData))


def _bound_findings(fig: plt.Figure) -> list[str]:
    findings = []
    for index, ax in enumerate(fig.axes):
        for column, which in enumerate(("x", "y")):
            bounds = getattr(_axis(ax, which), BOUNDS_ATTRIBUTE, None)
            if bounds is None:
                continue
            low, high = bounds
            for artist in [*ax.lines, *ax.collections, *ax.patches]:
                if not _in_data_coordinates(ax, artist)[column]:
                    continue  # spans the axes (axvline, axhspan's width): no value of the quantity
                values = _data_points(ax, artist)[:, column]
                values = values[np.isfinite(values)]
                slack = 1e-6 * (high - low)
                if len(values) and (values.min() < low - slack or values.max() > high + slack):
                    findings.append(f"axes {index} {which}: {type(artist).__name__} {artist.get_label()!r} spans "
                                    f"[{values.min():.4g}, {values.max():.4g}], outside the bounds [{low:g}, {high:g}]")
    return findings


def check_figure(fig: plt.Figure) -> list[str]:
    """What a reviewer would send back, one line each: visible text elements (titles, axis and
    tick labels, legends, notes) whose boxes overlap; tick labels or offset texts in x10^N or
    scientific form; an axis with tick labels but no label, or a numeric axis whose label names
    no units in parentheses (an index such as ``epoch`` has none); and anything drawn on an
    axis declared bounded (`declare_bounds`: intervals, bands, points) that leaves the bounds."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [*_overlap_findings(fig, renderer), *_notation_findings(fig), *_label_findings(fig),
            *_bound_findings(fig)]


def save_figure(fig: plt.Figure, pdf_path: str | Path, png_path: str | Path) -> None:
    """Write ``fig`` as PDF and PNG; with ``ROBUSTFLOW_CHECK_FIGURES=1``, refuse (FigureCheckError)
    a figure that `check_figure` finds fault with, naming the file and every finding."""
    if os.environ.get(CHECK_ENV) == "1":
        findings = check_figure(fig)
        if findings:
            plt.close(fig)
            raise FigureCheckError(f"{pdf_path}: " + "; ".join(findings))
    for path in (pdf_path, png_path):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=300)
    plt.close(fig)
