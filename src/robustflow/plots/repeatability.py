"""Figures of the repeatability study (source 004): does a model give the same answer to the same
input seen twice? Probabilities, consistencies, errors and disagreements are fractions in [0, 1];
shifts are in pixels. Where a mark is a mean over seeds, its interval is the 95% Student-t
interval over seeds clipped to [0, 1] (`robustflow.stats.proportion_interval`); one seed gives none.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import Bbox

from robustflow.plots.style import FULL_WIDTH_IN, apply_style, declare_bounds, legend_outside, nothing_to_show
from robustflow.stats import proportion_ci, proportion_interval

TRANSLATE_PANELS = 4  # at most this many images in the translate figure
RANDOM_SHIFT = "random_shift"
TITLE_SIZE = 7
ANNOTATED_SEEDS = 12  # more seeds than this: cells too small for numbers


def _order(values: pd.Series) -> list:
    return list(dict.fromkeys(values))


def _palette(variants: list) -> dict:
    """Colours as seaborn's hue mapping gives them (current palette, husl beyond its length)."""
    current = sns.color_palette()
    colours = current if len(variants) <= len(current) else sns.husl_palette(len(variants))
    return dict(zip(variants, colours))


def _title(ax: plt.Axes, text: str, width: int) -> None:
    # "[0, 1]" stays on one line (textwrap breaks only at ASCII white space)
    ax.set_title(textwrap.fill(text.replace("[0, 1]", "[0,\u00a01]"), width), fontsize=TITLE_SIZE)


def _seed_note(table: pd.DataFrame) -> str:
    """What the caption adds when no variant has two seeds (and so no interval is drawn)."""
    most = table.groupby("variant")["seed"].nunique().max() if "seed" in table.columns else 1
    return " One seed per variant: no intervals." if most < 2 else ""


# ---------------------------------------------------------------------------- 1. flip probability


def flip_probability(perturbations: pd.DataFrame) -> plt.Figure:
    """Flip probability per perturbation (x) and variant (bars: mean over seeds, whiskers: 95%
    t-interval clipped to [0, 1]). Noise perturbations (marked *) compare every frame with the
    clean frame 0, the others consecutive frames."""
    xlabel, ylabel = "perturbation", "flip probability (fraction of frame pairs)"
    if perturbations.empty:
        return nothing_to_show("no flip probabilities (the perturbations table is empty)", xlabel, ylabel)
    apply_style()
    rows = perturbations.copy()
    noise = (rows.groupby("perturbation")["noise"].any().to_dict() if "noise" in rows.columns
             else {name: False for name in rows["perturbation"]})
    names = _order(rows["perturbation"])
    display = {name: name.replace("_", " ") + (" *" if noise.get(name, False) else "") for name in names}
    rows["perturbation"] = rows["perturbation"].map(display)
    variants = _order(rows["variant"])
    rotate = len(names) > 4
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN, 3.6 if rotate else 3.0), constrained_layout=True)
    sns.barplot(data=rows, x="perturbation", y="flip_probability", hue="variant", order=[display[n] for n in names],
                hue_order=variants, palette=_palette(variants), errorbar=proportion_interval, capsize=0.1,
                err_kws={"linewidth": 0.8}, ax=ax)
    ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(0, min(1.02, ax.get_ylim()[1])))
    declare_bounds(ax, "y")
    if rotate:
        ax.tick_params(axis="x", rotation=90)
    marked = " Perturbations marked * are noise: each frame is compared with the clean frame 0; " \
             "the others compare consecutive frames." if any(noise.values()) else \
             " Pairs are consecutive frames."
    _title(ax, "Flip probability per perturbation. Bars: mean over seeds; whiskers: 95% t-interval over seeds "
               "(clipped to [0, 1])." + marked + _seed_note(rows), 120)
    legend_outside(fig, ax)
    return fig


# ---------------------------------------------------------------------------- 2. translate probability


def translate_probability(translate: pd.DataFrame) -> plt.Figure:
    """For up to four test images (one panel each), the softmax probability of the unshifted
    image's top class against the horizontal shift, one line per variant, at the smallest seed."""
    xlabel, ylabel = "horizontal shift (px)", "P(top class of unshifted image)"
    if translate.empty:
        return nothing_to_show("no translated images (the translate table is empty)", xlabel, ylabel)
    apply_style()
    seed = translate["seed"].min()
    rows = translate[translate["seed"] == seed]
    images = sorted(rows["image"].unique())[:TRANSLATE_PANELS]
    variants = _order(rows["variant"])
    palette = _palette(variants)
    fig, axes = plt.subplots(1, len(images), figsize=(FULL_WIDTH_IN, 2.4), sharey=True, squeeze=False,
                             constrained_layout=True)
    for ax, image in zip(axes[0], images):
        subset = rows[rows["image"] == image]
        sns.lineplot(data=subset, x="shift", y="top_class_probability", hue="variant", hue_order=variants,
                     palette=palette, errorbar=None, marker="o", markersize=3, linewidth=1, ax=ax)
        ax.axvline(0, color="grey", linestyle=":", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        ax.set(xlabel=xlabel, ylabel=ylabel if ax is axes[0, 0] else "", ylim=(0, 1.02))
        declare_bounds(ax, "y")
        ax.set_title(f"test image {image}", fontsize=TITLE_SIZE)
    legend_outside(fig, axes[0, 0])
    fig.suptitle(f"Output as the image shifts (seed {seed}; one run per line; dotted: no shift)",
                 fontsize=TITLE_SIZE + 1)
    return fig


# ---------------------------------------------------------------------------- 3. consistency vs shift


def consistency_vs_shift(shifts: pd.DataFrame) -> plt.Figure:
    """Consistency (same top-1 on two randomly shifted views) against the maximum shift distance,
    one line per variant (mean over seeds, band: 95% t-interval clipped to [0, 1])."""
    xlabel, ylabel = "maximum shift distance (px)", "consistency (fraction of view pairs\nwith the same top-1)"
    if shifts.empty:
        return nothing_to_show("no shifted views (the shifts table is empty)", xlabel, ylabel)
    rows = shifts[shifts["protocol"] == RANDOM_SHIFT]
    if rows.empty:
        return nothing_to_show(f"no rows of the {RANDOM_SHIFT} protocol in the shifts table", xlabel, ylabel)
    apply_style()
    variants = _order(rows["variant"])
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN * 0.6, 2.8), constrained_layout=True)
    sns.lineplot(data=rows, x="distance", y="consistency", hue="variant", hue_order=variants,
                 palette=_palette(variants), errorbar=proportion_interval, marker="o", markersize=4, ax=ax)
    distances = sorted(rows["distance"].unique())
    if len(distances) <= 10:
        ax.set_xticks(distances)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel=xlabel, ylabel=ylabel, ylim=(None, min(1.0, ax.get_ylim()[1]) + 0.005))
    declare_bounds(ax, "y")
    _title(ax, "Consistency under random shifts. Lines: mean over seeds; bands: 95% t-interval over seeds "
               "(clipped to [0, 1])." + _seed_note(rows), 60)
    legend_outside(fig, ax)
    return fig


# ---------------------------------------------------------------------------- 4. corruption vs flip


def _overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _overlap_area(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(width, 0.0) * max(height, 0.0)


def _label_points(ax: plt.Axes, points: list[tuple[float, float]], labels: list[str], colours: list) -> None:
    """Write each label next to its point where it overlaps no other label or point and stays
    inside the axes (nearest free place on rings of 8 directions; failing that, the least
    overlapping). Labels are left out of the layout, which is settled first, so they stay put."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    marker = 4.0 * fig.dpi / 72.0  # half the marker's width in pixels
    obstacles = []
    for x, y in points:
        px, py = ax.transData.transform((x, y))
        obstacles.append(Bbox.from_extents(px - marker, py - marker, px + marker, py + marker))
    directions = [(1, 0), (1, 1), (-1, 1), (-1, 0), (1, -1), (-1, -1), (0, 1), (0, -1)]
    candidates = [(radius * dx, radius * dy) for radius in (5, 12, 20, 30, 42) for dx, dy in directions]
    placed = []
    for (x, y), label, colour in zip(points, labels, colours):
        best, best_cost = None, math.inf
        for dx, dy in candidates:
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7,
                               color=colour, ha="left" if dx > 0 else "right" if dx < 0 else "center",
                               va="bottom" if dy > 0 else "top" if dy < 0 else "center",
                               arrowprops={"arrowstyle": "-", "color": colour, "linewidth": 0.5, "shrinkB": 0, "shrinkA": 1}
                               if abs(dx) + abs(dy) > 12 else None)
            text.set_in_layout(False)
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            outside = box.width * box.height - _overlap_area(box, frame)
            cost = outside * 10 + sum(_overlap_area(box, other) for other in [*placed, *obstacles]) * 10
            if cost < best_cost:
                if best is not None:
                    best[0].remove()
                best, best_cost = (text, box), cost
            else:
                text.remove()
            if cost == 0:
                break
        placed.append(best[1])


def corruption_vs_flip(runs: pd.DataFrame) -> plt.Figure:
    """Mean corruption error on the study's CIFAR-10-C set against mean flip probability over the
    scored perturbations, one point per variant (mean over seeds, bars: 95% t-intervals)."""
    xlabel = "mean flip probability over scored\nperturbations (fraction of frame pairs)"
    ylabel = "mean corruption error on the study's\nCIFAR-10-C set (fraction misclassified)"
    columns = ["variant", "mean_flip_probability", "mean_corruption_error"]
    if runs.empty or runs[columns[1:]].isna().all().any():
        return nothing_to_show("no runs with both a flip probability and a corruption error", xlabel, ylabel)
    apply_style()
    variants = _order(runs["variant"])
    palette = _palette(variants)
    fig, ax = plt.subplots(figsize=(FULL_WIDTH_IN * 0.6, 3.2), constrained_layout=True)
    points, shown = [], []
    for variant in variants:
        subset = runs[runs["variant"] == variant]
        centre, error = [], []
        for column in columns[1:]:
            mean, low, high = proportion_ci(subset[column])
            centre.append(mean)
            error.append([[mean - low], [high - mean]] if not math.isnan(low) else None)
        if any(math.isnan(value) for value in centre):
            continue  # a variant without one of the two means has no point
        ax.errorbar(centre[0], centre[1], xerr=error[0], yerr=error[1], fmt="o", markersize=5, capsize=2,
                    elinewidth=0.8, color=palette[variant])
        points.append((centre[0], centre[1]))
        shown.append(variant)
    ax.margins(0.25)
    for get, set_ in ((ax.get_xlim, ax.set_xlim), (ax.get_ylim, ax.set_ylim)):
        low, high = get()
        pad = 0.02 * (high - low)
        set_(max(low, -pad), min(high, 1.0 + pad))  # the margin for labels stays within [0, 1]
    ax.set(xlabel=xlabel, ylabel=ylabel)
    declare_bounds(ax, "x")
    declare_bounds(ax, "y")
    _title(ax, "Corruption error vs flip probability. Points: mean over seeds per variant; bars: 95% t-intervals "
               "over seeds (clipped to [0, 1])." + _seed_note(runs), 62)
    _label_points(ax, points, shown, [palette[v] for v in shown])
    return fig


# ---------------------------------------------------------------------------- 5. seed agreement


def _disagreement(rows: pd.DataFrame, seeds: list) -> pd.DataFrame:
    """The symmetric seed x seed matrix, zeros on the diagonal; pairs given once are mirrored."""
    matrix = pd.DataFrame(np.nan, index=seeds, columns=seeds)
    for a, b, value in rows[["seed_a", "seed_b", "disagreement"]].itertuples(index=False):
        matrix.loc[a, b] = value
        if pd.isna(matrix.loc[b, a]):
            matrix.loc[b, a] = value
    for seed in seeds:
        if pd.isna(matrix.loc[seed, seed]):
            matrix.loc[seed, seed] = 0.0
    matrix.index.name, matrix.columns.name = "seed a", "seed b"
    return matrix


def seed_agreement(agreement: pd.DataFrame) -> plt.Figure:
    """For each variant, the fraction of test images on which two seeds' models predict different
    classes (seed x seed, shared colour scale from 0 to the largest; cells annotated while the
    numbers fit, up to about ten seeds), titled with Fleiss' kappa over all its seeds."""
    xlabel, ylabel = "seed b", "seed a"
    if agreement.empty:
        return nothing_to_show("no seed pairs (the agreement table is empty)", xlabel, ylabel)
    seeds = {variant: sorted(set(rows["seed_a"]) | set(rows["seed_b"]))
             for variant, rows in agreement.groupby("variant", sort=False)}
    variants = [variant for variant in _order(agreement["variant"]) if len(seeds[variant]) >= 2]
    if not variants:
        return nothing_to_show("seed agreement needs at least two seeds of a variant", xlabel, ylabel)
    apply_style()
    largest = max(len(seeds[v]) for v in variants)
    panel_in = float(np.clip(0.3 * largest + 0.55, 1.45, 2.1))
    columns_n = max(1, min(len(variants), int((FULL_WIDTH_IN - 0.6) // panel_in)))
    rows_n = math.ceil(len(variants) / columns_n)
    fig, axes = plt.subplots(rows_n, columns_n, figsize=(panel_in * columns_n + 0.9, (panel_in + 0.5) * rows_n),
                             squeeze=False, constrained_layout=True)
    vmax = float(agreement["disagreement"].max())
    vmax = vmax if vmax > 0 else 1.0
    panels = []
    for index, variant in enumerate(variants):
        ax = axes.flat[index]
        rows = agreement[agreement["variant"] == variant]
        matrix = _disagreement(rows, seeds[variant])
        sns.heatmap(matrix, annot=len(matrix) <= ANNOTATED_SEEDS, fmt=".3f", vmin=0, vmax=vmax, cmap="rocket_r",
                    cbar=False, square=True, annot_kws={"size": 7}, linewidths=0.5, linecolor="white", ax=ax)
        kappa = rows["fleiss_kappa"].dropna() if "fleiss_kappa" in rows.columns else pd.Series(dtype=float)
        kappa_text = f"Fleiss' \u03ba = {kappa.iloc[0]:.3f}" if len(kappa) else "Fleiss' \u03ba undefined"
        title = variant if len(variant) <= 24 else textwrap.fill(variant.replace("-", "- "), 24).replace("- ", "-")
        ax.set_title(f"{title}\n{kappa_text}", fontsize=TITLE_SIZE)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.tick_params(axis="both", labelsize=7, rotation=0)
        panels.append((ax, [str(seed) for seed in matrix.index]))
    for ax in axes.flat[len(variants):]:
        ax.remove()
    colorbar = fig.colorbar(panels[-1][0].collections[0], ax=[ax for ax, _ in panels], shrink=0.9 if rows_n == 1 else 0.7)
    colorbar.set_label("disagreement (fraction)", fontsize=TITLE_SIZE)
    colorbar.ax.tick_params(labelsize=TITLE_SIZE)
    width_chars = int(fig.get_figwidth() * 72 / ((TITLE_SIZE + 1) * 0.55) * 0.85)
    fig.suptitle(textwrap.fill("Disagreement between seeds: each cell is the fraction of test images on which the "
                               "two seeds' models predict different classes", width_chars), fontsize=TITLE_SIZE + 1)
    _fit_cells(fig, panels)
    return fig


def _fit_cells(fig: plt.Figure, panels: list[tuple[plt.Axes, list[str]]]) -> None:
    """Once the layout is settled, shrink each panel's cell numbers to fit their cells (three
    decimals, else two; none below 4.5 pt) and keep every seed's tick only while the labels fit."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    gap = 3 * fig.dpi / 72
    for ax, labels in panels:
        cell = ax.get_window_extent(renderer).width / len(labels)
        widest = max(text.get_window_extent(renderer).width for text in ax.get_xticklabels())
        step = max(1, math.ceil((widest + gap) / cell))
        ticks = np.arange(len(labels))[::step]
        ax.set_xticks(ticks + 0.5, [labels[i] for i in ticks])
        ax.set_yticks(ticks + 0.5, [labels[i] for i in ticks])
        if not ax.texts:
            continue
        widest = max(text.get_window_extent(renderer).width for text in ax.texts)
        size = 7 * 0.8 * cell / widest
        if size < 5.5:  # two decimals: four characters of five
            for text in ax.texts:
                text.set_text(f"{float(text.get_text()):.2f}")
            size = 7 * 0.8 * cell / max(text.get_window_extent(renderer).width for text in ax.texts)
        if size < 4.5:
            for text in list(ax.texts):
                text.remove()
        else:
            for text in ax.texts:
                text.set_fontsize(min(7.0, size))


FIGURES = {
    "flip_probability": lambda tables, config: flip_probability(tables["perturbations"]),
    "translate_probability": lambda tables, config: translate_probability(tables["translate"]),
    "consistency_vs_shift": lambda tables, config: consistency_vs_shift(tables["shifts"]),
    "corruption_vs_flip": lambda tables, config: corruption_vs_flip(tables["runs"]),
    "seed_agreement": lambda tables, config: seed_agreement(tables["agreement"]),
}
