"""Figures of the learning-rule study; points and lines are the mean over seeds, bars and bands
the 95% Student-t interval over seeds (clipped to [0, 1] for accuracies).

Each entry of ``FIGURES`` takes ``tables`` with the aggregated ``metrics``, ``noise`` and
``sweep`` DataFrames (as read back from their CSVs) and ``weights``: a mapping from
``cell_id(method, constraint)`` (e.g. ``"hebbian-none"``) to that cell's ``.npz`` (anything
mapping ``"seed<k>"`` to a (D, 2) array, such as ``numpy.load(path)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from robustflow.plots.style import (
    FULL_WIDTH_IN,
    NOISE_LABELS,
    apply_style,
    declare_bounds,
    log_scale,
    note,
    nothing_to_show,
)
from robustflow.stats import interval_for, mean_ci, proportion_interval, t_interval
from robustflow.studies.learning_rule.plan import METHODS, cell_id, parse_constraint_id

OUTPUT_RATIO_LABEL = "output ratio (ratio)\nmean z_target / mean z_other"
MARGIN_SNR_LABEL = "margin SNR (ratio)\nmean / std of z_y - z_other"
ACCURACY_LABEL = "test accuracy (fraction)"
HISTOGRAM_BINS = 40


def _constraint_order(ids) -> list[str]:
    """Constraint ids from loosest to tightest: none first, then by shrinking width hi - lo."""
    def key(text: str) -> tuple[bool, float, float]:
        bounds = parse_constraint_id(text)
        if bounds is None:
            return False, 0.0, 0.0
        return True, -(bounds[1] - bounds[0]), bounds[0]
    return sorted(set(ids), key=key)


def _constraint_label(text: str) -> str:
    bounds = parse_constraint_id(text)
    return "none" if bounds is None else f"[{bounds[0]:g}, {bounds[1]:g}]"


def _methods(frame: pd.DataFrame) -> list[str]:
    present = set(frame["method"])
    return [m for m in METHODS if m in present]


def _finite(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    # inf (a zero denominator) cannot be averaged or drawn; it is dropped like nan.
    return frame.assign(**{c: frame[c].replace([np.inf, -np.inf], np.nan) for c in columns})


def _set_ratio_scale(ax: plt.Axes, values: pd.Series) -> None:
    """Log scale when every drawn value is positive and they span a decade or more, symlog when
    some are not positive; linear over a narrower range (where a log axis shows nothing more)."""
    values = values.dropna()
    if not len(values):
        return
    if (values <= 0).any():
        ax.set_yscale("symlog")
    elif values.max() >= 10 * values.min():
        log_scale(ax, "y")


def _seeds(frame: pd.DataFrame) -> int:
    return int(frame.groupby(["method", "constraint"])["seed"].nunique().max())


def _note_undefined(ax: plt.Axes, rows: pd.DataFrame, metric: str, by: str, label=str) -> None:
    """Name the groups of ``by`` whose ``metric`` is undefined (NaN or inf) for every seed, which
    draw no point: the output ratio needs non-negative outputs, which signed readouts lack."""
    undefined = [label(g) for g, group in rows.groupby(by, sort=False) if group[metric].isna().all()]
    if undefined:
        reason = "signed outputs" if metric == "output_ratio" else "no finite value"
        note(ax, f"undefined ({reason}), not drawn:\n" + ", ".join(undefined))


def _interval_title(n_seeds: int, bounded: bool) -> str:
    clip = ", clipped to [0, 1] for accuracy" if bounded else ""
    return f"mean over {n_seeds} seeds;\n95% t-interval{clip}"


def _shared_legend(fig: plt.Figure, title: str) -> None:
    """One legend right of the figure with every label drawn in any panel."""
    entries: dict[str, object] = {}
    for ax in fig.axes:
        handles, labels = ax.get_legend_handles_labels()
        entries.update({label: handle for handle, label in zip(handles, labels) if label not in entries})
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(list(entries.values()), list(entries), title=title, loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False)


def snr_by_method(metrics: pd.DataFrame) -> plt.Figure:
    """Clean-test output ratio and margin SNR per method, at the loosest constraint (none if run)."""
    apply_style()
    reference = _constraint_order(metrics["constraint"])[0]
    rows = _finite(metrics[metrics["constraint"] == reference], ["output_ratio", "margin_snr"])
    methods = _methods(rows)
    # 3.4 in tall: the two-line y labels must fit beside the panels, under the suptitle
    fig, axes = plt.subplots(1, 2, figsize=(FULL_WIDTH_IN, 3.4), constrained_layout=True)
    for ax, (metric, label) in zip(axes, [("output_ratio", OUTPUT_RATIO_LABEL), ("margin_snr", MARGIN_SNR_LABEL)]):
        sns.pointplot(data=rows, x="method", y=metric, order=methods, errorbar=t_interval,
                      linestyle="none", capsize=0.2, ax=ax)
        _set_ratio_scale(ax, rows[metric])
        _note_undefined(ax, rows, metric, "method")
        ax.set(xlabel="learning rule", ylabel=label, title=f"clean test set, weight constraint {_constraint_label(reference)}")
        ax.tick_params(axis="x", labelrotation=90)
    fig.suptitle(f"Linear readouts. Points: mean over {_seeds(rows)} seeds; bars: 95% t-interval", fontsize=8)
    return fig


def snr_vs_constraint(metrics: pd.DataFrame) -> plt.Figure:
    """Output ratio, margin SNR and accuracy against constraint tightness, per method."""
    apply_style()
    order = [_constraint_label(c) for c in _constraint_order(metrics["constraint"])]
    rows = _finite(metrics, ["output_ratio", "margin_snr"]).assign(
        constraint_label=metrics["constraint"].map(_constraint_label))
    methods = _methods(rows)
    fig, axes = plt.subplots(1, 3, figsize=(FULL_WIDTH_IN, 2.6), constrained_layout=True)
    panels = [("output_ratio", OUTPUT_RATIO_LABEL), ("margin_snr", MARGIN_SNR_LABEL),
              ("accuracy", ACCURACY_LABEL)]
    for ax, (metric, label) in zip(axes, panels):
        bounded = metric == "accuracy"
        sns.pointplot(data=rows, x="constraint_label", y=metric, hue="method", order=order, hue_order=methods,
                      errorbar=interval_for(metric),
                      dodge=0.4 if len(methods) > 1 else False, capsize=0.1, markersize=4, ax=ax)
        if bounded:
            declare_bounds(ax, "y")
        else:
            _set_ratio_scale(ax, rows[metric])
            _note_undefined(ax, rows, metric, "method")
        ax.set(xlabel="weight range (weight units)", ylabel=label)
        ax.tick_params(axis="x", labelrotation=90)
    fig.suptitle("Linear readouts on the clean test set; constraints from loosest (left) to tightest (right)",
                 fontsize=8)
    _shared_legend(fig, "learning rule\n" + _interval_title(_seeds(rows), True))
    return fig


def noise_robustness(noise: pd.DataFrame) -> plt.Figure:
    """Accuracy and margin SNR against noise level per method, one column per noise type."""
    apply_style()
    reference = _constraint_order(noise["constraint"])[0]
    rows = _finite(noise[noise["constraint"] == reference], ["margin_snr"])
    methods = _methods(rows)
    types = list(dict.fromkeys(rows["noise"]))
    fig, axes = plt.subplots(2, len(types), figsize=(FULL_WIDTH_IN, 4.2), sharex="col", squeeze=False,
                             constrained_layout=True)
    for column, noise_type in enumerate(types):
        subset = rows[rows["noise"] == noise_type]
        for row, (metric, label) in enumerate([("accuracy", ACCURACY_LABEL), ("margin_snr", MARGIN_SNR_LABEL)]):
            ax = axes[row, column]
            sns.lineplot(data=subset, x="level", y=metric, hue="method", hue_order=methods,
                         errorbar=interval_for(metric), marker="o",
                         markersize=3, ax=ax)
            if metric == "accuracy":
                declare_bounds(ax, "y")
            ax.set(xlabel=NOISE_LABELS.get(noise_type, noise_type), ylabel=label)
            if row == 0:
                ax.set_title(f"{noise_type.replace('_', ' ')}, weight constraint {_constraint_label(reference)}")
    _shared_legend(fig, "linear readout\nlines: " + _interval_title(_seeds(rows), True).replace("95%", "bands: 95%"))
    return fig


def _seed_arrays(weights: Mapping[str, Mapping[str, np.ndarray]], method: str, constraint: str) -> list[np.ndarray]:
    cell = cell_id(method, parse_constraint_id(constraint))
    if cell not in weights:
        raise ValueError(f"weights has no cell {cell!r}; cells present: {sorted(weights)}")
    seeds = weights[cell]
    return [np.asarray(seeds[key], dtype=float).ravel() for key in sorted(seeds)]


def weight_histograms(metrics: pd.DataFrame, weights: Mapping[str, Mapping[str, np.ndarray]]) -> plt.Figure:
    """Per method, the distribution of readout weights at the loosest and the tightest constraint.

    Each panel bins all seeds' weights on shared edges; the line is the mean over seeds of the
    fraction of weights per bin, the band its 95% t-interval.
    """
    apply_style()
    order = _constraint_order(metrics["constraint"])
    columns = [order[0], order[-1]] if len(order) > 1 else order
    methods = _methods(metrics)
    fig, axes = plt.subplots(len(methods), len(columns), figsize=(FULL_WIDTH_IN, 1.9 * len(methods)),
                             squeeze=False, constrained_layout=True)
    for row, method in enumerate(methods):
        for column, constraint in enumerate(columns):
            ax = axes[row, column]
            arrays = _seed_arrays(weights, method, constraint)
            edges = np.histogram_bin_edges(np.concatenate(arrays), bins=HISTOGRAM_BINS)
            fractions = np.stack([np.histogram(a, bins=edges)[0] / a.size for a in arrays])
            mean, low, high = np.array([mean_ci(fractions[:, b]) for b in range(fractions.shape[1])]).T
            low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)  # a fraction per bin
            ax.stairs(high, edges, baseline=low, fill=True, alpha=0.3)
            ax.stairs(mean, edges, linewidth=1.0)
            ax.set(xlabel="weight value (output per unit intensity)", ylabel="weights per bin\n(fraction)",
                   title=f"{method}, range {_constraint_label(constraint)}, {len(arrays)} seeds")
            declare_bounds(ax, "y")
    fig.suptitle("Readout weights after training. Line: mean over seeds of the fraction per bin; "
                 "band: 95% t-interval, clipped to [0, 1]", fontsize=8)
    return fig


def lr_sweep(sweep: pd.DataFrame) -> plt.Figure:
    """SGD validation accuracy against learning rate per method (log x); diverged runs marked x."""
    apply_style()
    if sweep.empty:  # the plan does not target this figure without an SGD method
        return nothing_to_show("no SGD method in this study, so no learning-rate sweep",
                               "learning rate (log scale)", "validation accuracy (fraction)")
    order = _constraint_order(sweep["constraint"])
    methods = _methods(sweep)
    fig, axes = plt.subplots(1, len(order), figsize=(FULL_WIDTH_IN, 2.6), sharey=True, squeeze=False,
                             constrained_layout=True)
    for ax, constraint in zip(axes[0], order):
        subset = sweep[sweep["constraint"] == constraint]
        sns.lineplot(data=subset, x="lr", y="accuracy", hue="method", hue_order=methods,
                     errorbar=proportion_interval, marker="o", markersize=3, ax=ax)
        declare_bounds(ax, "y")
        diverged = subset[subset["diverged"].astype(bool)]
        if len(diverged):
            ax.scatter(diverged["lr"], diverged["accuracy"], marker="x", color="black", s=25, zorder=3,
                       label="diverged run (last finite weights)")
        log_scale(ax, "x")
        ax.set(xlabel="learning rate (log scale)", ylabel="validation accuracy (fraction)",
               title=f"constraint {_constraint_label(constraint)}")
    fig.suptitle("SGD readouts on the validation split, one panel per weight constraint", fontsize=8)
    _shared_legend(fig, "SGD readout\nlines: " + _interval_title(_seeds(sweep), True).replace("95%", "bands: 95%"))
    return fig


FIGURES = {
    "snr_by_method": lambda tables, config: snr_by_method(tables["metrics"]),
    "snr_vs_constraint": lambda tables, config: snr_vs_constraint(tables["metrics"]),
    "noise_robustness": lambda tables, config: noise_robustness(tables["noise"]),
    "weight_histograms": lambda tables, config: weight_histograms(tables["metrics"], tables["weights"]),
    "lr_sweep": lambda tables, config: lr_sweep(tables["sweep"]),
}
