"""The background study's DAG steps on a tiny config: the tables they write and every figure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from robustflow.claims import NOT_TESTABLE
from robustflow.config import load_schema
from robustflow.io import checkpoint_dir
from robustflow.jobs import files
from robustflow.plots.background import FIGURES, influence_grid, saliency_grid
from robustflow.plots.style import save_figure
from robustflow.studies import STUDIES, validate
from robustflow.studies.background import claims as background_claims
from robustflow.studies.background import plan, steps, summary
from robustflow.studies.background.plan import GAP_COLUMNS

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")


def tiny_config() -> dict:
    return {
        "device": "cpu",
        # only this study is switched on, so validation runs only its checks
        **{section: {"enabled": False} for section in STUDIES if section != plan.SECTION},
        "background_study": {
            "source": "generated",
            "generated": {"seed": 0, "n_classes": 3, "correlation": 0.9, "image_size": 16, "digit_size": 10},
            "models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}},
                       {"id": "vit", "name": "vit_micro", "kwargs": {"embed_dim": 16, "depth": 1, "num_heads": 2}}],
            "methods": ["standard", "mixed_rand", "paired"],
            "reg_coeffs": [0.0, 1.0],
            "pair_mode": "noise",
            "seeds": [0, 1],
            # crop_padding 0: TrainSettings' default, which these runs trained with before they were validated
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.005, "eval_batch_size": 256, "crop_padding": 0},
            "saliency_samples": 4,
            "influence": {"n_test": 3, "top_k": 2},
        },
    }


@pytest.fixture(scope="module")
def study_outputs(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = validate(tiny_config(), SCHEMA)
    out = tmp_path_factory.mktemp("background")
    set_path = out / "set.pt"
    steps.generate_set(plan.job_config(cfg, "generate_set"), {}, files(), files(dataset=set_path))
    runs = [r for r in plan.runs(cfg) if r["model"] == "cnn" or r["method"] == "standard"]
    paths = {"accuracy": [], "history": [], "influence": []}
    for run in runs:
        folder = out / run["run"]
        model = folder / "model.pt"
        steps.train(plan.job_config(cfg, "train", run), run, files(dataset=set_path),
                    files(model=model, history=folder / "history.csv"))
        steps.evaluate(plan.job_config(cfg, "evaluate", run), run, files(dataset=set_path, model=model),
                       files(accuracy=folder / "accuracy.csv", saliency=folder / "saliency.npz"))
        steps.influence(plan.job_config(cfg, "influence", run), run, files(dataset=set_path, model=model),
                        files(influence=folder / "influence.csv", samples=folder / "influence.npz"))
        for kind in paths:
            paths[kind].append(folder / f"{kind}.csv")
    names = ["accuracy", "history", "influence", "gaps", "summary", "gap_summary", "claims", "proponents"]
    outputs = {name: out / "agg" / f"{name}.csv" for name in names}
    summary.aggregate(plan.job_config(cfg, "aggregate"), {}, files(**paths), files(**outputs))
    return cfg, out, runs, {name: pd.read_csv(path) for name, path in outputs.items()}


def test_study_runs_enumerate_the_sweep():
    runs = plan.runs(tiny_config())
    assert len(runs) == 2 * (1 + 1 + 2) * 2
    labels = {r["label"] for r in runs}
    assert labels == {"standard", "mixed_rand", "paired_reg0", "paired_reg1"}
    assert len({r["run"] for r in runs}) == len(runs)


def test_training_writes_one_snapshot_per_epoch(study_outputs):
    _, out, runs, _ = study_outputs
    for run in runs:
        snapshots = sorted(checkpoint_dir(out / run["run"] / "model.pt").glob("epoch_*.pt"))
        assert [p.name for p in snapshots] == ["epoch_001.pt", "epoch_002.pt"]


def test_accuracy_table_has_every_variation_of_every_run(study_outputs):
    _, _, runs, tables = study_outputs
    accuracy = tables["accuracy"]
    assert len(accuracy) == len(runs) * 8
    assert accuracy.groupby("run")["variation"].nunique().eq(8).all()
    assert accuracy["top1"].between(0, 1).all() and (accuracy["top5"] >= accuracy["top1"]).all()
    assert accuracy["fg_share"].between(0, 1).all()


def test_gaps_are_the_stated_differences(study_outputs):
    _, _, runs, tables = study_outputs
    accuracy, gaps = tables["accuracy"], tables["gaps"]
    assert len(gaps) == len(runs)
    for _, row in gaps.iterrows():
        per_variation = accuracy[accuracy["run"] == row["run"]].set_index("variation")
        top1, top5 = per_variation["top1"], per_variation["top5"]
        for column, (high, low) in GAP_COLUMNS.items():
            assert row[column] == pytest.approx(top1[high] - top1[low])
            assert row[f"{column}_top5"] == pytest.approx(top5[high] - top5[low])
    summary = tables["gap_summary"]
    assert set(summary["label"]) == {"standard", "mixed_rand", "paired_reg0", "paired_reg1"}
    assert (summary["n"] == 2).all()


def test_claims_table(study_outputs):
    _, _, _, tables = study_outputs
    claims = tables["claims"].set_index("claim_id")
    # source 002's ImageNet numbers are never comparable with the embedded set
    source_002 = claims[claims.index.str.startswith("source002_")]
    assert len(source_002) == 6 and (source_002["verdict"] == "not comparable").all()
    assert source_002["reason"].str.contains("embedded default").all()
    # directional claims are judged on the runs the sweep has: a verdict with its reason, or not
    # testable where the tiny runs could not learn the foreground (the reason says which precondition)
    judged = claims.loc["cnn_mixed_rand_training_shrinks_bg_gap"]
    assert judged["verdict"] in ("reproduced", "not reproduced", NOT_TESTABLE) and judged["n"] == 2
    if judged["verdict"] == NOT_TESTABLE:
        assert "than chance" in judged["reason"] or "too wide" in judged["reason"]
    assert claims.loc["vit_paired_shrinks_source002_gap", "verdict"] == "not comparable"  # no paired vit runs
    assert claims.loc["cnn_gap_exceeds_vit", "n"] == 2


def test_a_model_that_cannot_learn_the_foreground_makes_its_claims_not_testable():
    # 5 classes (chance 0.2); the cnn's mixed_rand runs learn (0.7 on mixed_rand), the vit's do not (0.21)
    config = {plan.SECTION: {"source": "generated", "generated": {"n_classes": 5},
                             "models": [{"id": "cnn", "name": "small_cnn"}, {"id": "vit", "name": "vit_micro"}]}}
    rows = []
    for model, learned in (("cnn", 0.7), ("vit", 0.21)):
        for seed, shift in enumerate((0.0, 0.01, 0.02)):
            for label, mixed_rand in (("standard", 0.2 + shift), ("mixed_rand", learned + shift)):
                gap = 0.9 - mixed_rand
                rows.append({"model": model, "label": label, "seed": seed, "mixed_rand": mixed_rand,
                             "gap_original_minus_mixed_rand": gap, "bg_gap_mixed_same_minus_mixed_rand": gap})
    table = background_claims.claims_table(pd.DataFrame(rows), config).set_index("claim_id")
    assert table.loc["cnn_mixed_rand_training_shrinks_bg_gap", "verdict"] == "reproduced"
    vit = table.loc["vit_mixed_rand_training_shrinks_bg_gap"]
    assert vit["verdict"] == NOT_TESTABLE and "no better than chance" in vit["reason"]
    assert table.loc["cnn_gap_exceeds_vit", "verdict"] == NOT_TESTABLE  # the comparison needs both models


def test_influence_table(study_outputs):
    cfg, _, runs, tables = study_outputs
    influence = tables["influence"]
    assert set(influence["kind"]) <= {"proponent", "opponent"}
    assert (influence["test_label"] != influence["test_prediction"]).all()  # misclassified images only
    per_image = influence.groupby(["run", "test_index", "kind"]).size()
    assert (per_image == 2).all()
    proponents = influence[influence["kind"] == "proponent"].sort_values(["run", "test_index", "rank"])
    assert proponents.groupby(["run", "test_index"])["score"].apply(lambda s: s.is_monotonic_decreasing).all()



def test_proponent_shares_by_hand():
    base = {c: None for c in plan.RUN_COLUMNS}
    rows = [
        # test image: label 0 on background class 2; proponents: same background, same label, neither
        {**base, "run": "a", "kind": "proponent", "rank": 1, "test_label": 0, "test_background_class": 2,
         "train_label": 1, "train_background_class": 2},
        {**base, "run": "a", "kind": "proponent", "rank": 2, "test_label": 0, "test_background_class": 2,
         "train_label": 0, "train_background_class": 3},
        {**base, "run": "a", "kind": "proponent", "rank": 3, "test_label": 0, "test_background_class": 2,
         "train_label": 4, "train_background_class": 4},
        {**base, "run": "a", "kind": "opponent", "rank": 1, "test_label": 0, "test_background_class": 2,
         "train_label": 0, "train_background_class": 2},
        # the real challenge: background classes unknown (-1)
        {**base, "run": "b", "kind": "proponent", "rank": 1, "test_label": 1, "test_background_class": -1,
         "train_label": 1, "train_background_class": -1},
    ]
    shares = summary.proponent_shares(pd.DataFrame(rows)).set_index("run")
    assert shares.loc["a", "n_proponents"] == 3
    assert shares.loc["a", "same_label"] == pytest.approx(1 / 3)
    assert shares.loc["a", "same_background"] == pytest.approx(1 / 3)
    assert shares.loc["b", "same_label"] == 1.0 and pd.isna(shares.loc["b", "same_background"])


def test_proponents_table_covers_every_influence_run(study_outputs):
    _, _, _, tables = study_outputs
    proponents = tables["proponents"]
    assert set(proponents["run"]) == set(tables["influence"]["run"])
    assert proponents[["same_label", "same_background"]].stack().between(0, 1).all()


def test_every_figure_renders(study_outputs, tmp_path):
    cfg, out, runs, tables = study_outputs
    first = runs[0]["run"]
    figures = {name: make(tables, plan.job_config(cfg, "figure", {"figure": name})) for name, make in FIGURES.items()}
    figures["saliency_grid"] = saliency_grid([summary.load_samples(out / r / "saliency.npz")
                                              for r in (first, runs[-1]["run"])], "cnn")
    figures["influence_grid"] = influence_grid(summary.load_samples(out / first / "influence.npz"), "cnn")
    for name, figure in figures.items():
        save_figure(figure, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


def test_unknown_source_is_an_error(tmp_path):
    cfg = plan.job_config(validate(tiny_config(), SCHEMA), "generate_set")
    cfg["background_study"]["source"] = "imagenet"
    with pytest.raises(ValueError, match="background_study.source"):
        steps.generate_set(cfg, {}, files(), files(dataset=tmp_path / "set.pt"))


def test_saliency_samples_hold_per_channel_maps_and_their_max(study_outputs):
    _, out, runs, _ = study_outputs
    samples = summary.load_samples(out / runs[0]["run"] / "saliency.npz")
    channels, maps = samples["saliency_channels"], samples["saliency"]
    assert channels.shape[:2] + channels.shape[3:] == maps.shape and channels.shape[2] == 3
    assert (channels >= 0).all() and channels.max() > 0
    assert (maps == channels.max(axis=2)).all()
