"""The repeatability study's figures: every figure renders to PDF and PNG from small synthetic
tables (several variants and seeds, and a single variant at a single seed) and passes the figure
check (`robustflow.plots.style.check_figure`)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from robustflow.plots.repeatability import FIGURES
from robustflow.plots.style import check_figure, save_figure
from robustflow.stats import proportion_interval

NAMES = ["flip_probability", "translate_probability", "consistency_vs_shift", "corruption_vs_flip",
         "seed_agreement"]
PERTURBATIONS = [("gaussian_noise", True), ("motion_blur", False), ("translate", False)]


def _tables(variants: list[str], seeds: list[int], images: int = 2) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)

    def run(variant, seed):
        model, method = variant.split("-", 1)
        return {"run": f"{variant}-s{seed}", "variant": variant, "model": model, "method": method, "seed": seed}

    perturbations, translate, shifts, runs, agreement = [], [], [], [], []
    for v, variant in enumerate(variants):
        for seed in seeds:
            base = run(variant, seed)
            for name, noise in PERTURBATIONS:
                fp = float(np.clip(0.02 + 0.03 * v + rng.normal(0, 0.01), 0, 1))
                perturbations.append({**base, "perturbation": name, "noise": noise, "flip_probability": fp,
                                      "top5_distance": 5 * fp, "flip_rate": 1 + v * 0.2})
            for image in range(images):
                for frame, shift in enumerate(range(-7, 9)):
                    probability = float(np.clip(0.9 - 0.02 * abs(shift) * (v + 1) + rng.normal(0, 0.02), 0, 1))
                    translate.append({**base, "image": image, "frame": frame, "shift": shift,
                                      "top_class_probability": probability})
            for distance in (1, 2, 3):
                for protocol in ("random_shift", "azulay_weiss"):
                    consistency = float(np.clip(0.97 - 0.01 * distance * (v + 1) + rng.normal(0, 0.005), 0, 1))
                    shifts.append({**base, "protocol": protocol, "distance": distance, "consistency": consistency,
                                   "top1_change": 1 - consistency, "top_class_probability_change": 0.05})
            runs.append({**base, "mean_flip_probability": 0.03 + 0.03 * v + rng.normal(0, 0.005),
                         "mean_corruption_error": 0.3 + 0.02 * v + rng.normal(0, 0.01)})
        kappa = 0.9 - 0.05 * v if len(seeds) > 1 else np.nan
        for a, b in itertools.combinations(seeds, 2):
            agreement.append({**run(variant, a), "seed_a": a, "seed_b": b,
                              "disagreement": 0.05 + 0.01 * v + rng.uniform(0, 0.02), "fleiss_kappa": kappa})
    return {"perturbations": pd.DataFrame(perturbations), "translate": pd.DataFrame(translate),
            "shifts": pd.DataFrame(shifts), "runs": pd.DataFrame(runs),
            "agreement": pd.DataFrame(agreement, columns=["run", "variant", "model", "method", "seed", "seed_a",
                                                          "seed_b", "disagreement", "fleiss_kappa"])}


CASES = {
    "three_variants": (["cnn-standard", "cnn-augmix", "cnn_blur-stability"], [0, 1, 2]),
    "two_variants": (["resnet18-standard", "resnet18-patch_gaussian"], [3, 4, 5]),
    "one_variant_three_seeds": (["cnn-augmix"], [0, 1, 2]),
    "one_variant_one_seed": (["cnn-standard"], [0]),
}


def test_figure_names():
    assert list(FIGURES) == NAMES


def test_proportion_interval_is_clipped():
    low, high = proportion_interval([0.0, 0.0, 0.01])
    assert low == 0.0 and 0.0 < high <= 1.0
    low, high = proportion_interval([1.0, 0.99, 1.0])
    assert high == 1.0
    assert all(np.isnan(proportion_interval([0.5])))


SAVED = ("three_variants", "one_variant_one_seed")  # written to disk (300 dpi PNGs take most of the time)


@pytest.mark.parametrize("case", list(CASES))
def test_every_figure_renders_and_passes_the_figure_check(case, tmp_path):
    variants, seeds = CASES[case]
    tables = _tables(variants, seeds)
    for name, make in FIGURES.items():
        fig = make(tables, {})
        findings = check_figure(fig)
        assert not findings, (name, findings)
        if case not in SAVED:
            plt.close(fig)
            continue
        pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
        save_figure(fig, pdf, png)
        assert pdf.stat().st_size > 0 and png.stat().st_size > 0, name


def test_single_seed_draws_no_intervals():
    tables = _tables(*CASES["one_variant_one_seed"])
    fig = FIGURES["seed_agreement"](tables, {})
    assert any("nothing to show" in text.get_text() for ax in fig.axes for text in ax.texts)
    plt.close(fig)
    fig = FIGURES["corruption_vs_flip"](tables, {})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["cnn-standard"]
    assert not ax.collections  # errorbar draws its bars as LineCollections; one seed draws none
    assert "no intervals" in ax.get_title()
    plt.close(fig)


def test_figures_read_their_own_rows():
    tables = _tables(*CASES["three_variants"], images=6)
    fig = FIGURES["translate_probability"](tables, {})
    assert len(fig.axes) == 4  # at most four images
    assert [ax.get_title() for ax in fig.axes] == [f"test image {i}" for i in range(4)]
    plt.close(fig)
    fig = FIGURES["consistency_vs_shift"](tables, {})
    lines = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 3]
    assert len(lines) == 3  # one per variant, random-shift rows only (means over seeds)
    for line in lines:
        assert np.all(np.asarray(line.get_ydata()) <= 1.0)
    plt.close(fig)
    fig = FIGURES["seed_agreement"](tables, {})
    heatmaps = [ax for ax in fig.axes if ax.get_title()]
    assert len(heatmaps) == 3 and all("Fleiss' \u03ba = " in ax.get_title() for ax in heatmaps)
    assert len(heatmaps[0].texts) == 9  # annotated 3 x 3 matrix
    plt.close(fig)
    runs = tables["runs"].copy()
    runs.loc[runs["variant"] == "cnn-augmix", "mean_corruption_error"] = np.nan
    fig = FIGURES["corruption_vs_flip"]({"runs": runs}, {})
    assert [t.get_text() for t in fig.axes[0].texts] == ["cnn-standard", "cnn_blur-stability"]
    plt.close(fig)


def test_empty_tables_say_nothing_to_show(tmp_path):
    tables = {name: table.iloc[0:0] for name, table in _tables(*CASES["two_variants"]).items()}
    for name, make in FIGURES.items():
        fig = make(tables, {})
        assert any("nothing to show" in text.get_text() for ax in fig.axes for text in ax.texts), name
        save_figure(fig, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
