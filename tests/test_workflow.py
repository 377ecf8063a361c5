"""The Snakemake workflow: dry runs of the shipped configs and a whole tiny run."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robustflow.claims import VERDICTS
from robustflow.jobs import read_trace
from tests.fixtures import paper_overrides, write_image_folder_fixture

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "workflow" / "Snakefile")]

TINY_CONFIG = {
    "device": "cpu",
    "noise_suite": {"types": ["gaussian", "occlusion"], "levels": [0.0, 0.5], "seed": 1},
    "loss_study": {
        "model": {"name": "small_cnn", "kwargs": {"features": [4, 8]}},
        "training": {"epochs": 2, "batch_size": 128},
        "seeds": [0, 1],
        "sweep": [
            {"loss": ["ce"]},
            {"loss": ["margin"], "margin_lambda": [1, 10]},
            {"loss": ["ce"], "ema": [True]},
        ],
    },
    "learning_rule_study": {
        "task": {"source": "digits", "image_size": 16},
        "methods": ["hebbian", "sgd_mse"],
        "constraints": [None, [0, 1]],
        "seeds": [0, 1],
        "epochs": 2,
        "sgd_lrs": [0.001, 0.01],
        "noise_types": ["gaussian"],
        "noise_levels": [0.0, 0.3],
    },
    "architecture_study": {
        "seeds": [0],
        "cifar10c": {"corruptions": ["gaussian_noise", "contrast"]},
        "source_task": {"training": {"epochs": 1}},
        "models": [
            {"id": "cnn", "family": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8, 8]},
             "training": {"scratch": {"epochs": 1}, "pretrained": {"epochs": 1}}},
            {"id": "vit", "family": "vit", "name": "vit_micro",
             "kwargs": {"patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2},
             "training": {"scratch": {"epochs": 1}, "pretrained": {"epochs": 1}}},
        ],
        "finetune": {"corruptions": ["contrast"], "epochs": 1},
    },
    "background_study": {
        "generated": {"n_classes": 3, "image_size": 16, "digit_size": 10},
        "models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}},
                   {"id": "vit", "name": "vit_micro",
                    "kwargs": {"patch_size": 4, "embed_dim": 16, "depth": 1, "num_heads": 2}}],
        "methods": ["standard", "paired"],
        "reg_coeffs": [1],
        "seeds": [0, 1],
        "training": {"epochs": 2},
        "saliency_samples": 3,
        "influence": {"n_test": 2, "top_k": 2},
    },
    "repeatability_study": {
        "models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}}],
        "methods": [{"id": "standard", "objective": "standard"},
                    {"id": "anti_aliased", "objective": "standard", "blur_filter": 3}],
        "seeds": [0, 1],
        "training": {"epochs": 1, "batch_size": 128},
        "perturbations": {"n_images": 10, "names": ["gaussian_noise", "translate"]},
        "cifar10c": {"corruptions": ["contrast"]},
        "shifts": {"max_shift": 2},
        "translate_images": 2,
    },
}


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def workdir_with(tmp_path: Path, config: dict) -> Path:
    """A working directory holding the shipped default config plus `config` as override."""
    (tmp_path / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from the dry-run summary table."""
    counts, in_table = {}, False
    for line in result.stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            in_table = True
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and counts and not parts:
            break
    return counts


def test_dry_run_of_default_config_plans_every_run(tmp_path):
    workdir = workdir_with(tmp_path, {})
    jobs = planned_jobs(snakemake(workdir, "-n", "--cores", "2"))
    runs = 11 * 3  # 11 variants x 3 seeds in config/config.yaml
    assert jobs["loss_train"] == runs and jobs["loss_evaluate"] == runs
    assert jobs["loss_figure"] == 4 and jobs["loss_aggregate"] == 1
    assert jobs["learning_rule_cell"] == 4 * 4 and jobs["learning_rule_figure"] == 5
    assert jobs["architecture_train"] == 2 * 2 * 3 and jobs["architecture_pretrain"] == 2 * 3  # models x inits x seeds
    assert jobs["architecture_prepare_cifar10c"] == 1 and jobs["architecture_figure"] == 5
    runs = 2 * 4 * 3  # models x (standard, mixed_rand, paired x 2 reg_coeffs) x seeds
    assert jobs["background_train"] == runs and jobs["background_evaluate"] == runs
    assert jobs["background_influence"] == 2 * 4  # influence on seed 0 only
    assert jobs["background_generate_set"] == 1 and jobs["background_figure"] == 3
    assert jobs["background_saliency_grid"] == 2 and jobs["background_influence_grid"] == 2


def test_dry_run_of_paper_config_against_fixture_data(tmp_path):
    (tmp_path / "fixtures").mkdir()
    workdir = workdir_with(tmp_path, paper_overrides(tmp_path))
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(REPO / "config" / "paper.yaml"),
                       str(workdir / "override.yaml"))
    jobs = planned_jobs(result)
    assert jobs["loss_train"] == 12 * 3  # 12 variants x 3 seeds in config/paper.yaml
    assert jobs["learning_rule_cell"] == 4 * 4  # methods x constraints
    runs = 2 * 2 * 3  # models x {scratch, pretrained} x seeds
    assert jobs["architecture_train"] == runs and jobs["architecture_evaluate"] == runs
    assert jobs["architecture_finetune"] == runs * 19  # one job per corruption at paper scale
    assert "architecture_pretrain" not in jobs  # timm ImageNet weights, not the offline stand-in
    assert jobs["background_train"] == 2 * 5 * 3  # models x methods (paired x 3 reg_coeffs) x seeds
    assert jobs["repeatability_train"] == 2 * 8 * 3  # models x methods x seeds
    assert jobs["repeatability_prepare_sequences"] == 1 and jobs["repeatability_figure"] == 5
    # GPU resources are declared on the paper-scale training jobs.
    assert "gpu=1" in result.stdout


def test_paper_config_without_cifar10_stops_before_any_job(tmp_path):
    workdir = workdir_with(tmp_path, {"datasets": {"cifar10": {"root": str(tmp_path / "absent")}}})
    write_image_folder_fixture(tmp_path / "data" / "road_images")
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(REPO / "config" / "paper.yaml"),
                       str(workdir / "override.yaml"), check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "loss_study.dataset" in output and str(tmp_path / "absent") in output
    assert not (workdir / "results").exists()


def test_bad_key_stops_before_any_job(tmp_path):
    workdir = workdir_with(tmp_path, {"loss_study": {"sweep": [{"loss": ["hinge"]}]}})
    result = snakemake(workdir, "--cores", "2", "--configfile", str(workdir / "override.yaml"), check=False)
    assert result.returncode != 0
    assert "loss_study.sweep[0].loss[0]" in result.stdout + result.stderr
    assert not (workdir / "results").exists()


@pytest.mark.workflow
def test_tiny_pipeline_end_to_end(tiny_run):
    workdir = tiny_run
    results = workdir / "results"
    for figure in ["training_curves", "robustness_curves", "lambda_ablation", "confidence"]:
        for ext in ["pdf", "png"]:
            path = results / "figures" / f"loss_{figure}.{ext}"
            assert path.stat().st_size > 5000, path
    noise = pd.read_csv(results / "tables" / "loss_noise.csv")
    # 4 variants x 2 seeds, raw weights, plus EMA weights for the 2 EMA runs; 2 types x 2 levels.
    assert len(noise) == (4 * 2 + 2) * 2 * 2
    clean = noise[noise["level"] == 0]
    # Level 0 is the clean test set for every noise type.
    by_type = clean.pivot_table(index=["run", "weights"], columns="noise", values="top1")
    assert (by_type["gaussian"] == by_type["occlusion"]).all()
    summary = pd.read_csv(results / "tables" / "loss_summary.csv")
    assert {"top1_mean", "top1_ci_low", "top1_ci_high", "n"} <= set(summary.columns)
    assert (summary["n"] == 2).all()
    claims = pd.read_csv(results / "tables" / "loss_claims.csv")
    assert set(claims["verdict"]) <= set(VERDICTS)
    for rule in ["train", "evaluate"]:
        assert len(list((results / "logs" / "loss_study" / rule).glob("*.log"))) == 8

    for figure in ["snr_by_method", "snr_vs_constraint", "noise_robustness", "weight_histograms", "lr_sweep"]:
        assert (results / "figures" / f"learning_rule_{figure}.pdf").stat().st_size > 5000, figure
    metrics = pd.read_csv(results / "tables" / "learning_rule_metrics.csv")
    assert len(metrics) == 2 * 2 * 2  # methods x constraints x seeds
    clipped = metrics[metrics["constraint"] == "0-1"]
    assert (clipped["weight_min"] >= 0).all() and (clipped["weight_max"] <= 1).all()
    lr_claims = pd.read_csv(results / "tables" / "learning_rule_claims.csv")
    assert lr_claims["verdict"].notna().all()

    for figure in ["training_curves", "severity_curves", "corruption_heatmap", "finetune_improvement",
                   "clean_vs_corrupted"]:
        assert (results / "figures" / f"architecture_{figure}.png").stat().st_size > 5000, figure
    robustness = pd.read_csv(results / "tables" / "architecture_robustness.csv")
    # 4 runs x (clean + 2 corruptions x 5 severities)
    assert len(robustness) == 4 * (1 + 2 * 5)
    arch_claims = pd.read_csv(results / "tables" / "architecture_claims.csv")
    verdicts = set(arch_claims["verdict"])
    assert verdicts <= set(VERDICTS)
    # Source 002's CIFAR-10 numbers cannot be compared with a digits run, and the table says so.
    assert "not comparable" in verdicts
    for figure in ["accuracy_per_variation", "gap_per_method", "foreground_share", "saliency_grid_cnn",
                   "saliency_grid_vit", "influence_grid_cnn", "influence_grid_vit"]:
        assert (results / "figures" / f"background_{figure}.png").stat().st_size > 5000, figure
    accuracy = pd.read_csv(results / "tables" / "background_accuracy.csv")
    assert len(accuracy) == 2 * 2 * 2 * 8  # models x methods x seeds x test variations (fg_mask is masks)
    gaps = pd.read_csv(results / "tables" / "background_gaps.csv")
    assert len(gaps) == 2 * 2 * 2
    assert (gaps["gap_original_minus_mixed_rand"] == gaps["original"] - gaps["mixed_rand"]).all()
    bg_claims = pd.read_csv(results / "tables" / "background_claims.csv")
    assert set(bg_claims["verdict"]) <= set(VERDICTS)
    assert len(list((results / "logs" / "background_study" / "train").glob("*.log"))) == 8
    for figure in ["flip_probability", "translate_probability", "consistency_vs_shift", "corruption_vs_flip",
                   "seed_agreement"]:
        assert (results / "figures" / f"repeatability_{figure}.png").stat().st_size > 5000, figure
    perturbations = pd.read_csv(results / "tables" / "repeatability_perturbations.csv")
    assert len(perturbations) == 2 * 2 * 2  # variants x seeds x perturbations
    assert perturbations["flip_probability"].between(0, 1).all()
    # The Snakemake report collects every study's figures and claims tables.
    snakemake(workdir, "--report", "results/report.html", "--configfile", str(workdir / "override.yaml"))
    report = (results / "report.html").read_text()
    for category in ["Loss study", "Learning-rule study", "Architecture study", "Background study",
                     "Repeatability study"]:
        assert category in report, category
    # Nothing left to do: the outputs are complete and consistent.
    assert "Nothing to be done" in snakemake(workdir, "-n", "--cores", "2", "--configfile",
                                              str(workdir / "override.yaml")).stdout + ""


def planned_runs(result: subprocess.CompletedProcess) -> dict[str, list[str]]:
    """Rule -> the wildcards of each job a dry run plans (empty string for a job without any)."""
    planned: dict[str, list[str]] = {}
    rule = None
    for line in result.stdout.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if match:
            rule = match.group(1)
            planned.setdefault(rule, []).append("")
        elif rule and line.strip().startswith("wildcards:"):
            planned[rule][-1] = line.strip().removeprefix("wildcards:").strip()
    return planned


def merged(base: dict, edit: dict) -> dict:
    """``base`` with ``edit`` merged in, dicts recursively (lists replace), as Snakemake merges configs."""
    out = copy.deepcopy(base)
    for key, value in edit.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def dry_run_with(workdir: Path, edit: dict) -> dict[str, list[str]]:
    (workdir / "edited.yaml").write_text(yaml.safe_dump(merged(TINY_CONFIG, edit)))
    return planned_runs(snakemake(workdir, "-n", "--cores", "2", "--configfile", str(workdir / "edited.yaml")))


@pytest.mark.workflow
def test_every_job_reads_exactly_its_params(tiny_run):
    traces = read_trace(tiny_run / "trace")
    assert len(traces) > 50  # one per job of the tiny run
    unread = {(trace["rule"], key) for trace in traces for key in trace["unread"]}
    assert not unread, f"config keys handed to jobs that never read them: {sorted(unread)}"


RESOURCES = {"gpu": 0, "threads": 2, "mem_mb": 3000, "runtime": 99}


@pytest.mark.workflow
def test_resources_and_unread_keys_rerun_nothing(tiny_run):
    edit = {section: {"resources": RESOURCES} for section in
            ("loss_study", "learning_rule_study", "architecture_study", "background_study", "repeatability_study")}
    # Keys that only some jobs read: grid keys a job does not depend on.
    edit["background_study"]["influence"] = {"seeds": [0], "n_test": 2, "top_k": 2}
    assert dry_run_with(tiny_run, edit) == {}


@pytest.mark.workflow
def test_a_new_seed_runs_only_its_own_jobs(tiny_run):
    edit = {"loss_study": {"seeds": [0, 1, 2]}, "architecture_study": {"seeds": [0, 1]},
            "background_study": {"seeds": [0, 1, 2]}, "repeatability_study": {"seeds": [0, 1, 2]}}
    planned = dry_run_with(tiny_run, edit)
    per_run = {"loss_train", "loss_evaluate", "architecture_train", "architecture_evaluate",
               "architecture_finetune", "background_train", "background_evaluate", "repeatability_train",
               "repeatability_evaluate"}
    for rule in per_run:
        new_seed = "s1" if rule.startswith("architecture") else "s2"
        assert planned[rule] and all(f"-{new_seed}" in wildcards for wildcards in planned[rule]), (rule, planned[rule])
    assert sorted(planned["architecture_pretrain"]) == ["model=cnn, seed=1", "model=vit, seed=1"]
    # Shared data is built once per DAG: a seed never regenerates it.
    assert not {"architecture_prepare_cifar10c", "background_generate_set", "repeatability_prepare_sequences",
                "repeatability_prepare_cifar10c"} & set(planned)
    assert "background_influence" not in planned  # influence runs on seed 0 only
    # The learning-rule study was not edited; gatherers of the edited studies rerun.
    assert not any(rule.startswith("learning_rule") for rule in planned)
    assert {"loss_aggregate", "architecture_aggregate", "background_aggregate", "repeatability_aggregate"} <= set(planned)


@pytest.mark.workflow
def test_editing_one_study_reruns_none_of_the_others(tiny_run):
    edits = {
        "loss_study": {"loss_study": {"training": {"epochs": 3}}},
        "learning_rule_study": {"learning_rule_study": {"epochs": 3}},
        "architecture_study": {"architecture_study": {"finetune": {"epochs": 2}}},
        "background_study": {"background_study": {"training": {"epochs": 3}}},
        "repeatability_study": {"repeatability_study": {"training": {"epochs": 2}}},
    }
    for section, edit in edits.items():
        prefix = section.removesuffix("_study")
        planned = dry_run_with(tiny_run, edit)
        assert planned, section
        # `all` and the claims overview gather every study; they rerun with any of them.
        others = [rule for rule in planned if rule not in ("all", "claims_overview") and not rule.startswith(prefix)]
        assert not others, (section, others)
    # Fine-tuning settings rerun fine-tuning, not training, evaluation or pretraining.
    planned = dry_run_with(tiny_run, edits["architecture_study"])
    assert not {"architecture_train", "architecture_evaluate", "architecture_pretrain",
                "architecture_prepare_cifar10c"} & set(planned)


def test_lint_and_format_report_nothing(tmp_path):
    workdir = workdir_with(tmp_path, {})
    lint = snakemake(workdir, "--lint", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    snakefmt = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow"), str(REPO / "rules")],
        capture_output=True, text=True,
    )
    assert snakefmt.returncode == 0, snakefmt.stderr
