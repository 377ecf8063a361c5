import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from robustflow.claims import VERDICTS
from robustflow.jobs import files
from robustflow.plots.learning_rule import FIGURES
from robustflow.plots.style import save_figure
from robustflow.studies.learning_rule import plan, steps, summary
from robustflow.studies.learning_rule.claims import CLAIMS, claims_table
from robustflow.studies.learning_rule.plan import (
    METHODS,
    cell_id,
    constraint_id,
    parse_cell_id,
    parse_constraint_id,
)
from robustflow.studies.learning_rule.steps import load_task

CONSTRAINTS = [None, [0, 0.5]]
SEEDS = [0, 1]
LRS = [1e-3, 10.0]
NOISE_TYPES = ["gaussian", "salt_pepper"]
NOISE_LEVELS = [0.0, 0.5]


def _study_config():
    return {
        "task": {"source": "digits", "positive": [0], "negative": [1], "root": None, "image_size": 16,
                 "test_fraction": 0.3, "val_fraction": 0.2, "split_seed": 0},
        "methods": list(METHODS),
        "constraints": CONSTRAINTS,
        "seeds": SEEDS,
        "epochs": 2,
        "batch_size": 16,
        "hebbian_lr": 0.001,
        "margin_lambda": 1.0,
        "normalize": False,
        "sgd_lrs": LRS,
        "noise_types": NOISE_TYPES,
        "noise_levels": NOISE_LEVELS,
    }


def _cell_paths(root, method, constraint):
    stem = root / cell_id(method, constraint)
    return {kind: stem.with_name(f"{stem.name}_{kind}.{ext}")
            for kind, ext in (("metrics", "csv"), ("noise", "csv"), ("sweep", "csv"), ("weights", "npz"))}


def _run(config, root, method, constraint):
    """Run the cell ``method`` x ``constraint`` of the study section ``config`` as its job would."""
    paths = _cell_paths(root, method, constraint)
    full = {"learning_rule_study": config}
    job = next(cell for cell in plan.variants(full) if cell["variant"] == cell_id(method, constraint))
    steps.cell(plan.job_config(full, "cell", job), job, files(), files(**paths))
    return paths


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cells")
    config = _study_config()
    cells = {(m, constraint_id(c)): _run(config, root, m, c) for m in METHODS for c in CONSTRAINTS}
    return config, cells, lambda seed: seed_task(config, seed)


def seed_task(config, seed):
    """Seed k of a cell trains and tests on the split drawn with task.split_seed + k."""
    return load_task({**config["task"], "split_seed": config["task"]["split_seed"] + seed})


@pytest.fixture(scope="module")
def aggregated(study, tmp_path_factory):
    _, cells, _ = study
    out = tmp_path_factory.mktemp("aggregated")
    names = ("metrics", "noise", "sweep", "summary", "claims")
    outputs = files(**{name: out / f"{name}.csv" for name in names})
    inputs = files(**{kind: [p[kind] for p in cells.values()] for kind in ("metrics", "noise", "sweep")})
    # The task is digits 0 vs 1, not the source's road images: only the directional claims are comparable.
    config = plan.job_config({"learning_rule_study": _study_config()}, "aggregate")
    summary.aggregate(config, {}, inputs, outputs)
    tables = {name: pd.read_csv(out / f"{name}.csv") for name in names}
    return tables


@pytest.mark.parametrize("constraint, text", [
    (None, "none"), ([0, 2], "0-2"), ([0, 1], "0-1"), ([0, 0.5], "0-0.5"),
    ((-1, 1e-05), "-1-1e-05"), ([0.25, 1500000], "0.25-1.5e+06"),
])
def test_constraint_id_round_trip(constraint, text):
    assert constraint_id(constraint) == text
    expected = None if constraint is None else tuple(float(v) for v in constraint)
    assert parse_constraint_id(text) == expected
    assert parse_cell_id(cell_id("hebbian_margin", constraint)) == ("hebbian_margin", expected)


@pytest.mark.parametrize("bad", [[0], [0, 0.1234567], [0, math.inf]])
def test_constraint_id_rejects_what_cannot_name_a_file(bad):
    with pytest.raises(ValueError, match="constraint"):
        constraint_id(bad)


@pytest.mark.parametrize("text", ["None", "0_2", "0-", "a-b", ""])
def test_parse_constraint_id_rejects_malformed_ids(text):
    with pytest.raises(ValueError, match="constraint id"):
        parse_constraint_id(text)


def test_load_task_errors_name_the_problem(tmp_path):
    folder = dict(_study_config()["task"], source="folder")
    with pytest.raises(ValueError, match="task.root"):
        load_task(folder)
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_task(dict(folder, root=str(tmp_path / "no_such_folder")))
    with pytest.raises(ValueError, match="source"):
        load_task(dict(folder, source="kitti"))


def test_run_cell_tables_have_one_row_per_seed_and_the_columns_named(study):
    config, cells, tasks = study
    for (method, constraint), paths in cells.items():
        metrics = pd.read_csv(paths["metrics"])
        assert list(metrics["seed"]) == SEEDS
        assert set(metrics["method"]) == {method} and set(metrics["constraint"]) == {constraint}
        for column in ("lo", "hi", "lr", "diverged", "accuracy", "output_ratio", "margin_mean", "margin_std",
                       "margin_snr", "normalized_margin", "top1", "ece", "weight_mean", "weight_std",
                       "weight_min", "weight_max"):
            assert column in metrics.columns, column

        noise = pd.read_csv(paths["noise"])
        assert len(noise) == len(SEEDS) * len(NOISE_TYPES) * len(NOISE_LEVELS)
        assert {"method", "constraint", "seed", "noise", "level", "accuracy", "margin_snr"} <= set(noise.columns)
        # Level 0 leaves the images unchanged, so it must repeat the clean test accuracy.
        clean = noise[noise["level"] == 0].merge(metrics, on="seed", suffixes=("", "_clean"))
        np.testing.assert_allclose(clean["accuracy"], clean["accuracy_clean"])

        sweep = pd.read_csv(paths["sweep"])
        assert {"method", "constraint", "seed", "lr", "selected", "diverged", "accuracy"} <= set(sweep.columns)
        assert len(sweep) == (len(SEEDS) * len(LRS) if method.startswith("sgd") else 0)

        with np.load(paths["weights"]) as weights:
            assert sorted(weights.files) == [f"seed{s}" for s in SEEDS]
            for _, row in metrics.iterrows():
                w = weights[f"seed{row['seed']}"]
                task = tasks(int(row["seed"]))
                assert w.shape == (task.n_inputs, 2)
                assert row["weight_min"] == pytest.approx(w.min()) and row["weight_max"] == pytest.approx(w.max())
                assert row["weight_mean"] == pytest.approx(w.astype(float).mean())
                outputs = task.test_x.flatten(1).double() @ torch.from_numpy(w).double()
                assert row["accuracy"] == pytest.approx(float((outputs.argmax(1) == task.test_y).double().mean()))
                # The source's ratio exists only for non-negative outputs.
                assert math.isnan(row["output_ratio"]) == bool((outputs < 0).any())


def test_hebbian_cell_trains_on_the_whole_training_split(study):
    config, cells, tasks = study
    metrics = pd.read_csv(cells[("hebbian", "none")]["metrics"])
    assert (metrics["lr"] == config["hebbian_lr"]).all()
    with np.load(cells[("hebbian", "none")]["weights"]) as weights:
        for seed in SEEDS:
            # Unconstrained Hebbian weights are epochs * lr * X^T T whatever the batch order.
            task = tasks(seed)
            expected = (config["epochs"] * config["hebbian_lr"]
                        * task.train_x.flatten(1).double().T @ F.one_hot(task.train_y, 2).double())
            np.testing.assert_allclose(weights[f"seed{seed}"], expected.numpy(), rtol=1e-5, atol=1e-7)


def test_sgd_never_selects_a_diverged_lr_and_reports_the_selected_one(study):
    _, cells, _ = study
    n_diverged = 0
    for (method, _), paths in cells.items():
        if not method.startswith("sgd"):
            continue
        sweep = pd.read_csv(paths["sweep"])
        metrics = pd.read_csv(paths["metrics"])
        n_diverged += int(sweep["diverged"].sum())
        assert not (sweep["selected"] & sweep["diverged"]).any()
        selected = sweep[sweep["selected"]].set_index("seed")["lr"]
        assert sorted(selected.index) == SEEDS  # exactly one selected lr per seed
        assert (metrics.set_index("seed")["lr"] == selected).all()
        assert not metrics["diverged"].any()
    # MSE at lr 10 on 256 inputs in [0, 1] grows geometrically; the test must see it diverge.
    sgd_mse = pd.read_csv(cells[("sgd_mse", "none")]["sweep"])
    assert sgd_mse.loc[sgd_mse["lr"] == 10.0, "diverged"].all()
    assert n_diverged >= len(SEEDS)


def test_clipped_cells_keep_weights_in_range(study):
    _, cells, _ = study
    for (method, constraint), paths in cells.items():
        bounds = parse_constraint_id(constraint)
        if bounds is None:
            continue
        metrics = pd.read_csv(paths["metrics"])
        assert (metrics["lo"] == bounds[0]).all() and (metrics["hi"] == bounds[1]).all()
        assert (metrics["weight_min"] >= bounds[0]).all() and (metrics["weight_max"] <= bounds[1]).all()
        with np.load(paths["weights"]) as weights:
            for key in weights.files:
                assert weights[key].min() >= bounds[0] and weights[key].max() <= bounds[1]


def test_run_cell_is_deterministic(study, tmp_path):
    config, cells, _ = study
    again = _run(config, tmp_path, "sgd_mse", [0, 0.5])
    first = cells[("sgd_mse", "0-0.5")]
    for kind in ("metrics", "noise", "sweep"):
        assert again[kind].read_bytes() == first[kind].read_bytes()
    with np.load(again["weights"]) as a, np.load(first["weights"]) as b:
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key])


def test_aggregate_summary_is_the_mean_over_seeds(aggregated):
    tables = aggregated
    metrics, summary = tables["metrics"], tables["summary"]
    assert len(metrics) == len(METHODS) * len(CONSTRAINTS) * len(SEEDS)
    assert len(summary) == len(METHODS) * len(CONSTRAINTS)
    expected = metrics.groupby(["method", "constraint"])["margin_snr"].mean()
    got = summary.set_index(["method", "constraint"])["margin_snr_mean"]
    np.testing.assert_allclose(got.loc[expected.index], expected)
    assert (summary["n"] == len(SEEDS)).all()
    assert len(tables["noise"]) == len(METHODS) * len(CONSTRAINTS) * len(SEEDS) * 4
    assert len(tables["sweep"]) == 2 * len(CONSTRAINTS) * len(SEEDS) * len(LRS)


def test_aggregate_claims_table_judges_every_claim(aggregated):
    tables = aggregated
    claims = tables["claims"].set_index("claim_id")
    # The source's magnitudes, then the directional claims.
    expected_ids = [item.claim.claim_id for directional in (False, True) for item in CLAIMS
                    if item.directional == directional]
    assert list(claims.index) == expected_ids
    assert set(claims["verdict"]) <= set(VERDICTS)
    assert claims["reason"].fillna("").str.len().gt(0).all()
    # Magnitudes measured on digits are not the source's KITTI numbers ...
    assert claims.loc["hebbian_snr", "verdict"] == "not comparable"
    assert "digits 0 vs 1" in claims.loc["hebbian_snr", "reason"]
    # ... a range this config did not run is named ...
    assert claims.loc["hebbian_constraint_0_2_snr", "verdict"] == "not comparable"
    assert "hebbian-0-2" in claims.loc["hebbian_constraint_0_2_snr", "reason"]
    # ... and directions are judged; the measurement is the per-seed relative change.
    metrics = tables["metrics"]
    hebbian = metrics[metrics["method"] == "hebbian"].pivot(index="seed", columns="constraint", values="output_ratio")
    change = (hebbian["0-0.5"] - hebbian["none"]) / hebbian["none"]
    row = claims.loc["hebbian_tight_constraint_lowers_snr"]
    assert row["verdict"] in ("reproduced", "not reproduced")
    assert row["measured_mean"] == pytest.approx(change.mean(), abs=1e-12)
    sgd = metrics[(metrics["method"] == "sgd_mse") & (metrics["constraint"] == "none")]
    assert claims.loc["sgd_mse_fails_to_learn", "measured_mean"] == pytest.approx(sgd["accuracy"].mean())


def test_nan_output_ratio_of_signed_sgd_outputs_gets_a_reason(aggregated):
    metrics = aggregated["metrics"].copy()
    # What signed SGD outputs give (see the output_ratio check in the run_cell test).
    metrics.loc[metrics["method"] == "sgd_mse", "output_ratio"] = math.nan
    for comparable in (True, False):
        claims = claims_table(metrics, dataset_label="digits", comparable=comparable).set_index("claim_id")
        for claim_id in ("sgd_mse_snr", "hebbian_vs_sgd_snr_ratio", "hebbian_vs_sgd_snr_higher"):
            row = claims.loc[claim_id]
            assert row["verdict"] == ("inconclusive" if comparable or claim_id.endswith("higher")
                                      else "not comparable")
            assert "undefined (nan) for 2 of 2 seeds" in row["reason"]
            assert "signed" in row["reason"]
        # Hebbian outputs stay non-negative, so its own claim carries no such note.
        assert "undefined" not in claims.loc["hebbian_snr", "reason"]


def test_every_figure_renders_from_the_aggregated_tables(study, aggregated, tmp_path):
    _, cells, _ = study
    tables = {name: aggregated[name] for name in ("metrics", "noise", "sweep")}
    tables["weights"] = {cell_id(m, parse_constraint_id(c)): np.load(p["weights"]) for (m, c), p in cells.items()}
    for name, make in FIGURES.items():
        fig = make(tables, {"learning_rule_study": _study_config()})
        for ax in fig.axes:
            assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axis"
        pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
        save_figure(fig, pdf, png)
        assert pdf.stat().st_size > 1000 and png.stat().st_size > 1000
    incomplete = {cell: w for cell, w in tables["weights"].items() if cell != "sgd_ce-0-0.5"}
    with pytest.raises(ValueError, match="no cell 'sgd_ce-0-0.5'"):
        FIGURES["weight_histograms"](dict(tables, weights=incomplete), {})
