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


def test_job_overhead_reports_each_job_beside_the_baselines(capsys):
    benchmark = load_benchmark("job_overhead")
    rows = benchmark.main(["--rounds", "1", "--kinds", "aggregate"])
    measured = {row["what"]: row for row in rows}
    assert set(benchmark.KINDS["aggregate"]) | set(benchmark.BASELINES) | set(benchmark.DATA_LOAD) <= set(measured)
    assert all(row["median_s"] > 0 for row in rows)
    assert measured["bare import torch"]["x_import_torch"] == 1.0
    assert "| this | aggregate | loss_aggregate |" in capsys.readouterr().out
