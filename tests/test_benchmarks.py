"""The benchmark scripts run end to end on a tiny setting (their numbers are not asserted: speed
targets live in the benchmarks' printed ratios, never in tests)."""

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_model_throughput_reports_every_model_and_variant(capsys):
    benchmark = load_benchmark("model_throughput")
    rows = benchmark.main(["--device", "cpu", "--models", "small_cnn:16", "--variants", "fp32", "amp",
                           "--batch-size", "8", "--steps", "1", "--warmup", "1", "--rounds", "1"])
    assert [(row["model"], row["variant"]) for row in rows] == [("small_cnn", "fp32"), ("small_cnn", "amp")]
    assert all(row["images_per_s"] > 0 for row in rows)
    assert rows[0]["speedup"] == 1.0
    assert "small_cnn at 16x16" in capsys.readouterr().out


def test_model_throughput_rejects_bad_arguments():
    benchmark = load_benchmark("model_throughput")
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--steps", "0"])


def test_augmix_epoch_trains_both_objectives_on_the_paper_recipe(capsys):
    benchmark = load_benchmark("augmix_epoch")
    rows = benchmark.main(["--device", "cpu", "--model", "small_cnn", "--n-train", "64", "--n-val", "16",
                           "--epochs", "1"])
    assert [row["objective"] for row in rows] == ["augmix", "standard"]
    assert all(row["images_per_s"] > 0 and row["device"] == "CPU" for row in rows)
    out = capsys.readouterr().out
    assert "batch 128, sgd" in out  # config/paper.yaml's repeatability_study.training
    assert "an AugMix epoch takes" in out


def test_augmix_epoch_rejects_bad_arguments():
    benchmark = load_benchmark("augmix_epoch")
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--epochs", "0"])
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--objectives", "mixup"])


def test_job_overhead_reports_each_job_beside_the_baselines(capsys):
    benchmark = load_benchmark("job_overhead")
    rows = benchmark.main(["--rounds", "1", "--kinds", "aggregate"])
    measured = {row["what"]: row for row in rows}
    assert set(benchmark.KINDS["aggregate"]) | set(benchmark.BASELINES) | set(benchmark.DATA_LOAD) <= set(measured)
    assert all(row["median_s"] > 0 for row in rows)
    assert measured["bare import torch"]["x_import_torch"] == 1.0
    assert "| this | aggregate | loss_aggregate |" in capsys.readouterr().out
