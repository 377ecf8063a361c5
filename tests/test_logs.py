"""Job logs: what a job runs at the top, a line per training epoch, the learning-rule cells' results."""

import dataclasses
import json
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from robustflow.data import load_digits
from robustflow.io import log_to
from robustflow.jobs import TRACE_ENV, files, read_trace, run_step
from robustflow.models import create_model
from robustflow.studies.learning_rule import plan, steps
from robustflow.training import TrainSettings, train_classifier


class _Namedlist(dict):
    """Snakemake's params as run_step reads them: by attribute and with ``.get``."""

    def __getattr__(self, name):
        return self[name]


def _snakemake_job(log, config, job, rule="learning_rule_cell", output=None):
    """The attributes of Snakemake's ``snakemake`` object that run_step reads."""
    return SimpleNamespace(log=[str(log)], rule=rule, threads=1, resources=SimpleNamespace(gpu=0),
                           params=_Namedlist(config=config, job=job),
                           input=files(), output=output or files())


def _lines(log) -> list[str]:
    """The log's lines as a terminal shows them: progress-bar redraws (``\\r``) overwrite a line."""
    return [line.split("\r")[-1] for line in log.read_text().splitlines()]


def _value(lines: list[str], key: str) -> str:
    return next(line.split(f" {key}: ", 1)[1] for line in lines if f" {key}: " in line)


def test_job_log_starts_with_what_it_runs_and_ends_with_the_elapsed_time(tmp_path, monkeypatch):
    monkeypatch.setenv(TRACE_ENV, str(tmp_path / "trace"))
    config = {"loss_study": {"training": {"epochs": 3, "lr": 0.1}}}
    log = tmp_path / "job.log"
    run_step(_snakemake_job(log, config, {"run": "ce-s0", "seed": 0}, rule="loss_train"),
             lambda config, job, inputs, outputs: None)
    lines = _lines(log)
    assert json.loads(_value(lines, "config")) == config
    assert json.loads(_value(lines, "job")) == {"run": "ce-s0", "seed": 0}
    assert _value(lines, "rule").startswith("loss_train (step ")
    for key in ("study", "python", "robustflow", "host", "start", "torch"):
        assert _value(lines, key), key
    assert f"{torch.get_num_threads()} threads" in _value(lines, "torch")
    assert re.search(r" done in \d+\.\d s$", lines[-1])
    # Echoing the config read none of its keys: the step read nothing, so all are unread.
    assert read_trace(tmp_path / "trace")[0]["unread"] == ["loss_study.training.epochs", "loss_study.training.lr"]


def test_the_header_names_the_study_of_a_step_in_steps_or_summary():
    from robustflow.jobs import job_header
    from robustflow.studies.loss import steps, summary

    job = SimpleNamespace(rule="r", params=SimpleNamespace(config={}, get=lambda key: {}))
    assert job_header(job, steps.train)["study"] == "loss"
    assert job_header(job, summary.figure)["study"] == "loss"


def test_a_light_job_logs_its_header_without_importing_torch(tmp_path):
    script = f"""
import sys
from types import SimpleNamespace
from robustflow.io import write_json
from robustflow.jobs import files, run_step
class Namedlist(dict):
    __getattr__ = dict.__getitem__
smk = SimpleNamespace(log=[{str(tmp_path / "light.log")!r}], rule="loss_figure", threads=1,
                      resources=SimpleNamespace(), params=Namedlist(config={{"x": 1}}),
                      input=files(), output=files(table={str(tmp_path / "out.json")!r}))
run_step(smk, lambda config, job, inputs, outputs: write_json(config, outputs.table))
assert "torch" not in sys.modules, "a light job imported torch"
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    lines = _lines(tmp_path / "light.log")
    assert _value(lines, "torch").startswith("not imported")
    assert _value(lines, "config") == '{"x":1}'


# devices=2: data-parallel workers are spawned processes; rank 0 must still write into the job's log.
@pytest.mark.parametrize("devices", [1, 2])
def test_training_logs_one_line_per_epoch_with_its_metrics_and_time(tmp_path, devices):
    data = load_digits(image_size=8)
    data = dataclasses.replace(data, train_x=data.train_x[:128], train_y=data.train_y[:128])
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=data.num_classes, img_size=8, features=(4, 8))
    log = tmp_path / "train.log"
    settings = TrainSettings(epochs=2, batch_size=32, ema_decay=0.9, devices=devices)
    with log_to(log):
        result = train_classifier(model, data, settings, tmp_path / "checkpoints")
    lines = _lines(log)
    epoch_lines = [line for line in lines if re.search(r" epoch \d+/2 ", line)]
    assert len(epoch_lines) == 2
    assert any("epochs: 100%" in line for line in lines)  # the progress bar is still there
    for line, row in zip(epoch_lines, result.history.to_dict("records")):
        assert f" epoch {row['epoch']}/2 " in line
        for key in ("lr", "train_loss", "train_top1", "val_top1", "val_loss", "ema_val_top1"):
            assert f" {key}={row[key]:.4g} " in line, (key, line)
        assert re.search(r" best val_top1=\S+@[12] ", line) and re.search(r" time=\d+\.\ds elapsed=\d+\.\ds$", line)
    best = result.history["val_top1"].max()
    assert f"best val_top1={best:.4g}@{result.best_epoch}" in epoch_lines[-1]


def test_a_learning_rule_cell_logs_each_seed_with_its_lr_sweep(tmp_path):
    study = {"task": {"source": "digits", "positive": [0], "negative": [1], "root": None, "image_size": 8,
                      "test_fraction": 0.3, "val_fraction": 0.2, "split_seed": 0},
             "methods": ["sgd_ce"], "constraints": [[0, 0.5]], "seeds": [0, 1], "epochs": 1, "batch_size": 16,
             "hebbian_lr": 0.001, "margin_lambda": 1.0, "normalize": False, "sgd_lrs": [1e-3, 1.0],
             "noise_types": ["gaussian"], "noise_levels": [0.0]}
    full = {"learning_rule_study": study}
    (job,) = plan.variants(full)
    outputs = files(**{kind: tmp_path / f"cell_{kind}.{ext}" for kind, ext in
                       (("metrics", "csv"), ("noise", "csv"), ("sweep", "csv"), ("weights", "npz"))})
    log = tmp_path / "cell.log"
    run_step(_snakemake_job(log, plan.job_config(full, "cell", job), job, output=outputs), steps.cell)
    text = log.read_text()
    for seed in (0, 1):
        assert f"cell method sgd_ce, constraint {job['constraint']}, seed {seed}: lr " in text
        assert re.search(rf"sgd_ce lr sweep \(seed {seed}\): 0\.001: .*, 1: .*; chose lr ", text)
    assert "test accuracy" in text
