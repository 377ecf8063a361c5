"""config/paper.yaml study by study, and what a user meets on the way there.

``config/paper/only_<study>.yaml`` switches every other study off: its run plans only that study's
jobs and needs only that study's inputs. Without an overlay, validation names every missing input
of the whole paper config in one error, so a user fixes them in one pass.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustflow.config import ConfigError, load_schema, validate_config
from robustflow.studies import STUDIES, enabled, validate
from tests.fixtures import (
    paper_overrides,
    write_bg_challenge_fixture,
    write_cifar10_fixture,
    write_image_folder_fixture,
)
from tests.test_workflow import merged, planned_jobs, snakemake, workdir_with

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
PAPER_FILE = REPO / "config" / "paper.yaml"
PAPER = yaml.safe_load(PAPER_FILE.read_text())


def overlay_file(section: str) -> Path:
    return REPO / "config" / "paper" / f"only_{section.removesuffix('_study')}.yaml"


def rule_prefix(section: str) -> str:
    """Every rule of a study is named after it: loss_train, learning_rule_cell, ..."""
    return section.removesuffix("study")


def stand_in_weights(tmp: Path, models: list[dict]) -> list[dict]:
    """The models with a file where their timm ImageNet weights would be (validation checks presence)."""
    for model in models:
        (tmp / f"{model['name']}.safetensors").write_bytes(b"stand-in")
    return [{**model, "pretrained_file": str(tmp / f"{model['name']}.safetensors")} for model in models]


def nothing_on_disk(tmp: Path) -> dict:
    """Every input of config/paper.yaml pointed at a path that does not exist."""
    absent = str(tmp / "absent")

    def without_weights(models: list[dict]) -> list[dict]:
        return [{**model, "pretrained_file": f"{absent}/{model['name']}.safetensors"} for model in models]

    return {"datasets": {"cifar10": {"root": absent}},
            "learning_rule_study": {"task": {"root": absent}},
            "architecture_study": {"cifar10c": {"root": absent},
                                   "models": without_weights(PAPER["architecture_study"]["models"])},
            "background_study": {"bg_challenge": {"root": absent},
                                 "models": without_weights(PAPER["background_study"]["models"])}}


def own_inputs(section: str, tmp: Path) -> dict:
    """Fixture data in the real layouts for ``section``'s inputs only."""
    cifar10 = {"datasets": {"cifar10": {"root": str(tmp / "cifar")}}}
    if section in ("loss_study", "architecture_study", "repeatability_study"):
        write_cifar10_fixture(tmp / "cifar")
    if section == "learning_rule_study":
        return {section: {"task": {"root": str(write_image_folder_fixture(tmp / "road_images"))}}}
    if section == "architecture_study":
        return {**cifar10, section: {"models": stand_in_weights(tmp, PAPER[section]["models"])}}
    if section == "background_study":
        return {section: {"bg_challenge": {"root": str(write_bg_challenge_fixture(tmp / "bg_challenge"))},
                          "models": stand_in_weights(tmp, PAPER[section]["models"])}}
    return cifar10


def test_every_study_has_an_overlay_that_switches_on_only_that_study():
    for section in STUDIES:
        config = validate_config(merged(PAPER, yaml.safe_load(overlay_file(section).read_text())), SCHEMA)
        assert enabled(config) == [section]
        assert config[section] == validate_config(PAPER, SCHEMA)[section]  # the paper settings, untouched


@pytest.mark.parametrize("section", STUDIES)
def test_one_study_needs_only_its_own_inputs(section, tmp_path):
    config = merged(merged(PAPER, nothing_on_disk(tmp_path)), own_inputs(section, tmp_path))
    with pytest.raises(ConfigError) as error:  # without the overlay, other studies' inputs are missing
        validate(config, SCHEMA)
    assert f"'{section}." not in str(error.value)  # but none of this study's own
    overlay = yaml.safe_load(overlay_file(section).read_text())
    assert enabled(validate(merged(config, overlay), SCHEMA)) == [section]


def test_every_missing_input_of_the_paper_config_is_reported_at_once(tmp_path):
    """CIFAR-10 partly there, no weights, no road images, a partial backgrounds challenge and
    official CIFAR-10-C and -P folders that each lack a file: one error names every problem."""
    cifar = write_cifar10_fixture(tmp_path / "cifar")
    for batch in ("data_batch_2", "data_batch_4"):
        (cifar / batch).unlink()
    bg_root = write_bg_challenge_fixture(tmp_path / "bg_challenge", train_splits=False)
    cifar10c = tmp_path / "CIFAR-10-C"
    cifar10c.mkdir()
    np.save(cifar10c / "fog.npy", np.zeros((5, 32, 32, 3), dtype=np.uint8))  # official files, but no labels.npy
    cifar10p = tmp_path / "CIFAR-10-P"
    cifar10p.mkdir()  # holds none of the perturbations
    override = merged(nothing_on_disk(tmp_path), {
        "datasets": {"cifar10": {"root": str(tmp_path / "cifar")}},
        "architecture_study": {"cifar10c": {"root": str(cifar10c)}},
        "background_study": {"bg_challenge": {"root": str(bg_root)}},
        "repeatability_study": {"perturbations": {"root": str(cifar10p)}},
    })
    with pytest.raises(ConfigError) as error:
        validate(merged(PAPER, override), SCHEMA)
    lines = str(error.value).splitlines()
    expected = {
        "loss_study.dataset": [str(cifar / "data_batch_2"), str(cifar / "data_batch_4")],
        "learning_rule_study.task.root": [str(tmp_path / "absent")],
        "architecture_study.models[0].pretrained_file": ["resnet50"],
        "architecture_study.models[1].pretrained_file": ["vit_small_patch16_224"],
        "architecture_study.cifar10c.root": [str(cifar10c / "labels.npy")],
        "background_study.models[0].pretrained_file": ["resnet50"],
        "background_study.models[1].pretrained_file": ["vit_small_patch16_224"],
        "background_study.bg_challenge.root": [str(bg_root / "mixed_rand" / "train"),
                                               str(bg_root / "fg_mask" / "train")],
        "repeatability_study.perturbations.root": [str(cifar10p / "gaussian_noise.npy")],
    }
    for key, details in expected.items():
        assert any(f"'{key}'" in line and all(detail in line for detail in details) for line in lines), (
            f"{key} with {details} not in:\n{error.value}")


def test_the_paper_config_with_nothing_on_disk_names_every_input_in_one_run(tmp_path):
    workdir = workdir_with(tmp_path, nothing_on_disk(tmp_path))
    result = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(PAPER_FILE),
                       str(workdir / "override.yaml"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for key in ("loss_study.dataset", "learning_rule_study.task.root", "architecture_study.models[0].pretrained_file",
                "background_study.bg_challenge.root", "background_study.models[1].pretrained_file",
                "repeatability_study.dataset"):
        assert f"'{key}'" in output, f"{key} not in:\n{output}"


@pytest.fixture(scope="module")
def paper_workdir(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A workdir with fixture data for every input of config/paper.yaml, and the jobs of its whole plan."""
    tmp_path = tmp_path_factory.mktemp("paper")
    (tmp_path / "fixtures").mkdir()
    workdir = workdir_with(tmp_path, paper_overrides(tmp_path))
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(PAPER_FILE), str(workdir / "override.yaml"))
    return workdir, planned_jobs(result)


@pytest.mark.parametrize("section", STUDIES)
def test_a_study_overlay_plans_exactly_that_study_of_the_paper_plan(section, paper_workdir):
    workdir, whole_plan = paper_workdir
    result = snakemake(workdir, "-n", "--cores", "2", "--configfile", str(PAPER_FILE),
                       str(workdir / "override.yaml"), str(overlay_file(section)))
    jobs = planned_jobs(result)
    expected = {rule: count for rule, count in whole_plan.items() if rule.startswith(rule_prefix(section))}
    assert expected, f"no job of {section} in the whole plan: {whole_plan}"
    # beside the study's own rules: the report's overview of the (now one) study's claims, and all
    assert {rule: count for rule, count in jobs.items() if rule not in ("all", "total", "claims_overview")} == expected
    assert jobs["claims_overview"] == 1


def test_a_nested_command_line_value_fails_with_the_config_file_way(tmp_path):
    """Snakemake 9 reads values nested in --config as strings, so the schema rejects them; the error
    says so and points to a config file."""
    workdir = workdir_with(tmp_path, {})
    result = snakemake(workdir, "-n", "--cores", "1", "--config", "architecture_study={enabled: false}", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'architecture_study.enabled': 'false' is not of type 'boolean'" in output
    assert "--config architecture_study=... as a string" in output and "config/paper/only_" in output
    flat = snakemake(workdir, "-n", "--cores", "1", "--config", "device=gpu", check=False)  # not nested: no note
    assert flat.returncode != 0 and "as a string" not in flat.stdout + flat.stderr


def test_no_file_refers_to_documents_outside_the_repository():
    # The names of the documents outside, written in pieces so that this file does not point at them either.
    outside = ("REFERENCE" ".md", ".." "/shared", "shared" "/", "seeds" "/")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    this_file = Path(__file__).relative_to(REPO).as_posix()
    hits = [(name, pointer) for name in tracked if name != this_file and (REPO / name).is_file()
            for pointer in outside if pointer in (REPO / name).read_text(errors="ignore")]
    assert not hits
