"""The figure check: each kind of fault is found on a small figure built to have it, and a clean
figure passes. (Every figure of every study is checked on the tiny run: tests/test_workflow.py
sets ROBUSTFLOW_CHECK_FIGURES, so a figure job with a finding fails the run.)"""

import pkgutil
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest

import robustflow.plots
from robustflow.plots.style import (
    CHECK_ENV,
    FigureCheckError,
    apply_style,
    check_figure,
    declare_bounds,
    save_figure,
)


def clean_figure() -> plt.Figure:
    apply_style()
    fig, ax = plt.subplots(figsize=(3, 2.5), constrained_layout=True)
    x = np.arange(1, 4)
    ax.plot(x, [0.2, 0.5, 0.7], marker="o", label="mean over 3 seeds")
    ax.fill_between(x, [0.1, 0.4, 0.6], [0.3, 0.6, 1.0], alpha=0.3, label="95% t-interval")
    ax.set(xlabel="epoch", ylabel="test top-1 (fraction)", title="clean")
    ax.legend(loc="upper left", frameon=False)
    declare_bounds(ax, "y")
    return fig


def test_a_clean_figure_passes():
    assert check_figure(clean_figure()) == []


def test_overlapping_texts_are_found():
    fig = clean_figure()
    ax = fig.axes[0]
    ax.text(0.5, 0.5, "undefined: signed outputs", transform=ax.transAxes)
    ax.text(0.52, 0.5, "undefined: signed outputs", transform=ax.transAxes)
    findings = check_figure(fig)
    assert len(findings) == 1 and findings[0].startswith("overlap") and "undefined" in findings[0]


def test_colliding_tick_labels_are_found():
    fig = clean_figure()
    ax = fig.axes[0]
    ax.set_xticks([1, 1.05], ["hebbian_margin", "sgd_mse"])
    assert any("tick 'hebbian_margin'" in f and "tick 'sgd_mse'" in f for f in check_figure(fig))


def test_times_ten_ticks_and_offset_text_are_found():
    apply_style()
    fig, (log_ax, offset_ax) = plt.subplots(1, 2, figsize=(6, 2.5), constrained_layout=True)
    log_ax.plot([1, 2], [1.2, 1.4])
    log_ax.set(yscale="log", xlabel="learning rate (1/step)", ylabel="margin SNR (ratio)")
    offset_ax.plot([1, 2], [1e6, 1e6 + 1])
    offset_ax.ticklabel_format(axis="y", useOffset=True)  # apply_style turns offsets off; a plot may not
    offset_ax.set(xlabel="learning rate (1/step)", ylabel="margin SNR (ratio)")
    findings = check_figure(fig)
    assert any("axes 0 y: tick label" in f and "scientific" in f for f in findings)
    assert any("axes 1 y: offset text" in f for f in findings)


def test_missing_labels_and_units_are_found():
    apply_style()
    fig, ax = plt.subplots(figsize=(3, 2.5), constrained_layout=True)
    ax.plot([0, 1], [0, 1])
    ax.set(ylabel="top-1 accuracy")
    findings = check_figure(fig)
    assert "axes 0 x: an axis with tick labels and no label" in findings
    assert any("axes 0 y: label 'top-1 accuracy' names no units" in f for f in findings)


def test_an_interval_above_one_is_found():
    fig = clean_figure()
    ax = fig.axes[0]
    ax.errorbar([2], [0.9], yerr=[[0.1], [0.2]], fmt="none", label="t-interval")
    findings = check_figure(fig)
    assert len(findings) == 1 and "outside the bounds [0, 1]" in findings[0] and "1.1" in findings[0]


def test_a_band_below_zero_is_found_and_undeclared_axes_are_free():
    fig = clean_figure()
    ax = fig.axes[0]
    ax.fill_between([1, 2], [-0.2, 0.1], [0.2, 0.3])
    assert any("FillBetweenPolyCollection" in f or "PolyCollection" in f for f in check_figure(fig))
    free, axis = plt.subplots(constrained_layout=True)
    axis.fill_between([1, 2], [-0.2, 0.1], [1.2, 1.3])
    axis.set(xlabel="epoch", ylabel="training loss (nats)")
    assert check_figure(free) == []


def test_save_figure_refuses_a_faulty_figure_when_asked(tmp_path, monkeypatch):
    fig = clean_figure()
    fig.axes[0].set_ylabel("")
    monkeypatch.setenv(CHECK_ENV, "1")
    with pytest.raises(FigureCheckError, match="no label"):
        save_figure(fig, tmp_path / "f.pdf", tmp_path / "f.png")
    assert not (tmp_path / "f.pdf").exists()
    save_figure(clean_figure(), tmp_path / "g.pdf", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 1000


def test_the_plots_layer_imports_no_torch():
    modules = [info.name for info in pkgutil.iter_modules(robustflow.plots.__path__)]
    assert {"style", "background", "repeatability"} <= set(modules)
    code = ("import sys\n" + "".join(f"import robustflow.plots.{m}\n" for m in modules)
            + "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
