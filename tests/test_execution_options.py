"""amp, channels_last, compile and devices reach the training loop in every study that trains.

They used to validate and then be dropped in the architecture and background studies; now
every key of a training block becomes a `TrainSettings` field. Data parallelism is run for
real (two gloo processes on the CPU), so a study that cannot honour it fails here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from robustflow.config import load_schema
from robustflow.jobs import files
from robustflow.studies import STUDIES, validate
from robustflow.studies.architecture import plan as architecture_plan
from robustflow.studies.architecture import steps as architecture_steps
from robustflow.studies.background import plan as background_plan
from robustflow.studies.background import steps as background_steps
from robustflow.studies.loss import steps as loss_steps
from robustflow.training import TrainSettings

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")
OPTIONS = {"amp": True, "channels_last": True, "compile": True, "devices": 3}


def only(section: str, study: dict) -> dict:
    return validate({"device": "cpu", **{s: {"enabled": False} for s in STUDIES if s != section}, section: study},
                    SCHEMA)


def test_every_training_block_of_every_study_carries_the_execution_options():
    loss = only("loss_study", {"training": OPTIONS})
    run = {"loss": "ce", "margin_lambda": None, "ema": False, "mixup_alpha": 0.0, "seed": 0}
    settings = [loss_steps.run_settings(loss, run)]
    blocks = {"scratch": OPTIONS, "pretrained": OPTIONS}
    architecture = only("architecture_study", {"models": [
        {"id": "cnn", "family": "cnn", "name": "small_cnn", "training": blocks}], "baseline": "cnn-scratch",
        "source_task": {"training": OPTIONS}})
    for run in architecture_plan.runs(architecture):
        block = architecture_plan.job_config(architecture, "train", run)["architecture_study"]["models"][0]
        settings.append(TrainSettings.from_config(block["training"][run["init"]], seed=0))
    source = architecture_plan.job_config(architecture, "pretrain", {"model": "cnn", "seed": "0"})
    settings.append(TrainSettings.from_config(source["architecture_study"]["source_task"]["training"], seed=0))
    background = only("background_study", {"training": OPTIONS})
    run = background_plan.runs(background)[0]
    settings.append(background_steps.train_settings(background_plan.job_config(background, "train", run), 0))
    assert len(settings) == 5
    for item in settings:
        assert {name: getattr(item, name) for name in OPTIONS} == OPTIONS


TWO_PROCESSES = {"epochs": 1, "batch_size": 100, "devices": 2}  # no last batch of a single image


@pytest.mark.parametrize("method", ["standard", "paired"])
def test_background_runs_train_data_parallel(tmp_path, method):
    config = only("background_study", {
        "generated": {"n_classes": 3, "image_size": 16, "digit_size": 10},
        "models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}}],
        "methods": [method], "reg_coeffs": [1.0], "seeds": [0], "training": TWO_PROCESSES})
    dataset = tmp_path / "set.pt"
    background_steps.generate_set(background_plan.job_config(config, "generate_set"), {}, files(),
                                  files(dataset=dataset))
    run = background_plan.runs(config)[0]
    outputs = files(model=tmp_path / "model.pt", history=tmp_path / "history.csv")
    background_steps.train(background_plan.job_config(config, "train", run), run, files(dataset=dataset), outputs)
    history = pd.read_csv(outputs.history)
    assert list(history["epoch"]) == [1]
    # TracIn's snapshot of the epoch is the weights the data-parallel ranks trained.
    assert (tmp_path / "model_checkpoints" / "epoch_001.pt").is_file()


def test_architecture_runs_train_data_parallel(tmp_path):
    config = only("architecture_study", {
        "models": [{"id": "cnn", "family": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]},
                    "training": {"scratch": TWO_PROCESSES}}],
        "baseline": "cnn-scratch", "seeds": [0]})
    run = next(run for run in architecture_plan.runs(config) if run["init"] == "scratch")
    outputs = files(model=tmp_path / "model.pt", history=tmp_path / "history.csv", test=tmp_path / "test.csv")
    architecture_steps.train(architecture_plan.job_config(config, "train", run), run, files(), outputs)
    assert list(pd.read_csv(outputs.history)["epoch"]) == [1]
    assert pd.read_csv(outputs.test)["test_top1"].between(0, 1).all()
