"""A bad config or bad data stops the workflow before any job, with a message naming the key (and the file).

Each case is one realistic mistake on top of the shipped default config (``config/config.yaml``),
given as an override merged the way Snakemake merges ``--configfile`` (dicts recursively, lists
replace), with its data written in the real public layouts. Every case is validated in-process
(`robustflow.studies.validate` is what ``rules/common.smk`` runs before the DAG is built) and must
raise one `ConfigError` whose problem line names the key and, for data, the offending path. The
cases marked ``SNAKEMAKE`` also run ``snakemake --cores 1`` for real on a temporary workdir: it must
exit non-zero, print the same, and leave no ``results/`` folder (no job ran).

Mistakes already covered by ``tests/test_config.py`` are not repeated here.
"""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import yaml

from robustflow.config import ConfigError, load_schema
from robustflow.studies import validate
from tests.fixtures import (
    CIFAR10_FOLDER,
    write_bg_challenge_fixture,
    write_cifar10_fixture,
    write_image_folder_fixture,
)
from tests.test_workflow import snakemake, workdir_with

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def merged(base: dict, edit: dict) -> dict:
    """``base`` with ``edit`` merged in as Snakemake merges config files (dicts recursively, lists replace)."""
    out = copy.deepcopy(base)
    for key, value in edit.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# ----------------------------------------------------------------------------- data in the real layouts

N_TEST = 4  # images per severity block of the CIFAR-10-C fixture
CIFAR10C_NAMES = ["gaussian_noise", "fog"]


def write_official_cifar10c(root: Path, names=CIFAR10C_NAMES, size: int = 32, dtype=np.uint8) -> Path:
    """The Zenodo release's layout: ``<corruption>.npy`` (5 * N, H, W, 3) uint8 and ``labels.npy`` (5 * N,)."""
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "labels.npy", np.tile(np.arange(N_TEST) % 10, 5).astype(np.int64))
    for name in names:
        np.save(root / f"{name}.npy", np.zeros((5 * N_TEST, size, size, 3), dtype=dtype))
    return root


def cifar10(tmp: Path) -> dict:
    """A CIFAR-10 fixture for the architecture study (official CIFAR-10-C needs dataset cifar10)."""
    write_cifar10_fixture(tmp / "cifar")
    return {"datasets": {"cifar10": {"root": str(tmp / "cifar")}}}


def architecture_on_cifar10c(tmp: Path, root: Path, **cifar10c) -> dict:
    override = merged(cifar10(tmp), {"architecture_study": {
        "dataset": "cifar10", "cifar10c": {"root": str(root), "corruptions": CIFAR10C_NAMES, **cifar10c},
        "finetune": {"corruptions": ["fog"]}}})
    return override


def default_models(section: str) -> list[dict]:
    return copy.deepcopy(DEFAULT[section]["models"])


def bg_challenge(tmp: Path, **study) -> tuple[Path, dict]:
    root = write_bg_challenge_fixture(tmp / "bg_challenge")
    return root, {"background_study": {"source": "bg_challenge", "bg_challenge": {"root": str(root)}, **study}}


# ----------------------------------------------------------------------------- the cases


@dataclass(frozen=True)
class Case:
    """One mistake: ``make(tmp)`` writes its data under ``tmp`` and returns ``(override, key, details)``:
    the problem line must quote ``key`` and contain every detail (paths, hints)."""

    study: str
    name: str
    make: Callable[[Path], tuple[dict, str, list[str]]]
    new_check: bool = False  # caught only since this file's checks were added (see the report)
    snakemake: bool = False  # also run snakemake for real
    problems: int = 1  # problem lines the message holds: a case is one mistake

    @property
    def id(self) -> str:
        return f"{self.study}/{self.name}"


CASES: list[Case] = []


def case(study: str, *, new_check: bool = False, snakemake: bool = False, problems: int = 1):
    def register(make):
        CASES.append(Case(study, make.__name__.removeprefix("_").replace("_", "-"), make, new_check, snakemake,
                          problems))
        return make
    return register


# --- loss study


def _loss_cifar10(tmp: Path) -> Path:
    folder = write_cifar10_fixture(tmp / "cifar")
    return folder


@case("loss", snakemake=True)
def _cifar10_with_a_training_batch_missing(tmp):
    folder = _loss_cifar10(tmp)
    (folder / "data_batch_3").unlink()
    return ({"loss_study": {"dataset": "cifar10"}, "datasets": {"cifar10": {"root": str(tmp / "cifar")}}},
            "loss_study.dataset", [str(folder / "data_batch_3"), "datasets.cifar10.root"])


@case("loss", new_check=True)
def _cifar10_root_is_the_batches_folder(tmp):
    folder = _loss_cifar10(tmp)
    return ({"loss_study": {"dataset": "cifar10"}, "datasets": {"cifar10": {"root": str(folder)}}},
            "loss_study.dataset", [str(folder / CIFAR10_FOLDER), f"set datasets.cifar10.root to {tmp / 'cifar'}"])


@case("loss", new_check=True)
def _cifar10_archive_downloaded_but_not_extracted(tmp):
    (tmp / "cifar").mkdir()
    (tmp / "cifar" / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08\x00 stand-in for the archive")
    return ({"loss_study": {"dataset": "cifar10"}, "datasets": {"cifar10": {"root": str(tmp / "cifar")}}},
            "loss_study.dataset", [str(tmp / "cifar" / "cifar-10-python.tar.gz"), "extract"])


@case("loss", new_check=True)
def _cifar10_binary_version_instead_of_python_version(tmp):
    binary = tmp / "cifar" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    for name in (*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin", "batches.meta.txt"):
        (binary / name).write_bytes(b"\x00" * 16)
    return ({"loss_study": {"dataset": "cifar10"}, "datasets": {"cifar10": {"root": str(tmp / "cifar")}}},
            "loss_study.dataset", [str(binary), "binary version", "cifar-10-python.tar.gz"])


@case("loss", new_check=True, snakemake=True)
def _cifar10_batch_file_empty_after_an_interrupted_copy(tmp):
    folder = _loss_cifar10(tmp)
    (folder / "data_batch_2").write_bytes(b"")
    return ({"loss_study": {"dataset": "cifar10"}, "datasets": {"cifar10": {"root": str(tmp / "cifar")}}},
            "loss_study.dataset", [str(folder / "data_batch_2"), "empty"])


@case("loss", new_check=True, snakemake=True)
def _margin_lambda_swept_for_losses_that_ignore_it(tmp):
    return ({"loss_study": {"sweep": [{"loss": ["ce", "focal"], "margin_lambda": [1, 10]},
                                      {"loss": ["margin"], "margin_lambda": [1]}]}},
            "loss_study.sweep[0].margin_lambda", ["margin", "combined"])


@case("loss", new_check=True)
def _small_cnn_kwarg_typo(tmp):
    return ({"loss_study": {"model": {"name": "small_cnn", "kwargs": {"feature": [16, 32, 64]}}}},
            "loss_study.model.kwargs", ["'feature'", "did you mean 'features'"])


@case("loss", new_check=True)
def _small_cnn_too_deep_for_32px_images(tmp):
    return ({"loss_study": {"model": {"kwargs": {"features": [16, 32, 64, 128, 256, 512]}}}},
            "loss_study.model.kwargs.features", ["6 pooling blocks", "32"])


@case("loss", new_check=True)
def _step_schedule_whose_step_outlasts_training(tmp):
    return ({"loss_study": {"training": {"schedule": "step", "step_size": 30}}},
            "loss_study.training.step_size", ["30", "epochs", "12"])


@case("loss")
def _baseline_spelt_with_underscore(tmp):
    return {"loss_study": {"baseline": "ce_ema"}}, "loss_study.baseline", ["ce_ema", "ce-ema"]


@case("loss")
def _typo_in_a_sweep_block(tmp):
    return ({"loss_study": {"sweep": [{"loss": ["ce"]}, {"loss": ["margin"], "lambda": [0.1, 1]}]}},
            "loss_study.sweep[1]", ["'lambda'", "did you mean 'margin_lambda'"])


@case("loss")
def _seeds_written_as_one_string(tmp):
    return {"loss_study": {"seeds": "0,1,2"}}, "loss_study.seeds", ["'0,1,2' is not of type 'array'"]


@case("loss")
def _ema_decay_of_one(tmp):
    return {"loss_study": {"training": {"ema_decay": 1.0}}}, "loss_study.training.ema_decay", ["1.0"]


@case("loss")
def _negative_mixup_alpha(tmp):
    return ({"loss_study": {"sweep": [{"loss": ["ce"], "mixup_alpha": [-0.2]}]}},
            "loss_study.sweep[0].mixup_alpha[0]", ["-0.2"])


# --- learning-rule study


def _road(tmp: Path, **kwargs) -> Path:
    return write_image_folder_fixture(tmp / "road_images", **kwargs)


def _folder_task(root: Path, **task) -> dict:
    return {"learning_rule_study": {"task": {"source": "folder", "root": str(root), **task}}}


@case("learning_rule", snakemake=True)
def _weight_range_lo_above_hi(tmp):
    return ({"learning_rule_study": {"constraints": [None, [0.5, 0]]}},
            "learning_rule_study.constraints[1]", ["lo < hi", "[0.5, 0]"])


@case("learning_rule")
def _positive_and_negative_share_a_digit(tmp):
    return ({"learning_rule_study": {"task": {"positive": [0, 1], "negative": [1, 7]}}},
            "learning_rule_study.task.negative", ["[1]"])


@case("learning_rule", snakemake=True)
def _road_folder_with_three_class_folders(tmp):
    root = _road(tmp, classes=("no_road", "road", "unsure"))
    return _folder_task(root), "learning_rule_study.task.root", [str(root), "found 3", "unsure"]


@case("learning_rule")
def _road_folder_with_an_empty_class_folder(tmp):
    root = _road(tmp)
    shutil.rmtree(root / "road")
    (root / "road").mkdir()
    return _folder_task(root), "learning_rule_study.task.root", [str(root / "road"), "holds no"]


@case("learning_rule")
def _road_images_not_sorted_into_class_folders(tmp):
    root = _road(tmp)
    for folder in ("no_road", "road"):
        for image in (root / folder).iterdir():
            image.rename(root / f"{folder}_{image.name}")
        (root / folder).rmdir()
    return _folder_task(root), "learning_rule_study.task.root", [str(root), "found 0"]


@case("learning_rule")
def _road_images_one_level_deeper_per_drive(tmp):
    root = _road(tmp)
    drive = root / "road" / "2011_09_26_drive_0001"
    drive.mkdir()
    for image in (root / "road").glob("*.png"):
        image.rename(drive / image.name)
    return _folder_task(root), "learning_rule_study.task.root", [str(root / "road"), "holds no"]


@case("learning_rule", new_check=True, snakemake=True)
def _road_class_with_a_single_image(tmp):
    root = _road(tmp)
    for image in sorted((root / "road").iterdir())[1:]:
        image.unlink()
    return _folder_task(root), "learning_rule_study.task.root", [str(root / "road"), "1 image", "at least 2"]


@case("learning_rule", new_check=True)
def _road_classes_too_small_for_the_sgd_validation_split(tmp):
    root = _road(tmp, n_per_class=3)
    return (_folder_task(root), "learning_rule_study.task.val_fraction",
            [str(root), "sgd_mse", "validation"])


@case("learning_rule", new_check=True)
def _road_root_is_the_zip_not_the_folder(tmp):
    archive = tmp / "road_images.zip"
    archive.write_bytes(b"PK\x03\x04 stand-in for the archive")
    return _folder_task(archive), "learning_rule_study.task.root", [str(archive), "is a file", "unpack"]


@case("learning_rule", new_check=True)
def _same_weight_range_listed_twice(tmp):
    return ({"learning_rule_study": {"constraints": [None, [0, 1], [0.0, 1.0]]}},
            "learning_rule_study.constraints[2]", ["0-1", "constraints[1]"])


@case("learning_rule")
def _unbounded_range_written_as_inf(tmp):
    return ({"learning_rule_study": {"constraints": [None, [0, float("inf")]]}},
            "learning_rule_study.constraints[1]", ["finite"])


@case("learning_rule")
def _range_bound_with_too_many_digits(tmp):
    return ({"learning_rule_study": {"constraints": [None, [0, 0.33333333]]}},
            "learning_rule_study.constraints[1]", ["6 significant digits"])


@case("learning_rule")
def _typo_in_the_task_block(tmp):
    return ({"learning_rule_study": {"task": {"postive": [3]}}},
            "learning_rule_study.task", ["'postive'", "did you mean 'positive'"])


@case("learning_rule")
def _positive_digit_not_in_a_list(tmp):
    return ({"learning_rule_study": {"task": {"positive": 3}}},
            "learning_rule_study.task.positive", ["3 is not of type 'array'"])


@case("learning_rule")
def _hebbian_learning_rate_of_zero(tmp):
    return {"learning_rule_study": {"hebbian_lr": 0}}, "learning_rule_study.hebbian_lr", ["0"]


# --- architecture study


@case("architecture", snakemake=True, problems=2)
def _cifar10c_files_of_the_wrong_image_size(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C", size=64)
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "gaussian_noise.npy"), "(20, 64, 64, 3)", "(20, 32, 32, 3)"])


@case("architecture", problems=2)
def _cifar10c_files_saved_as_float(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C", dtype=np.float32)
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "fog.npy"), "float32", "uint8"])


@case("architecture")
def _cifar10c_corruption_file_missing(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C")
    (root / "fog.npy").unlink()
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "fog.npy"), "does not exist", "zenodo"])


@case("architecture")
def _cifar10c_without_labels(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C")
    (root / "labels.npy").unlink()
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "labels.npy"), "does not exist"])


@case("architecture", new_check=True)
def _cifar10c_file_truncated_by_an_interrupted_download(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C")
    data = (root / "fog.npy").read_bytes()
    (root / "fog.npy").write_bytes(data[: len(data) // 2])
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "fog.npy"), "not a readable .npy"])


@case("architecture", new_check=True)
def _cifar10c_labels_are_an_html_error_page(tmp):
    root = write_official_cifar10c(tmp / "CIFAR-10-C")
    (root / "labels.npy").write_text("<!DOCTYPE html><html><body>429 Too Many Requests</body></html>")
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "labels.npy"), "not a readable .npy"])


@case("architecture", new_check=True, snakemake=True)
def _cifar10c_root_is_the_tar_archive(tmp):
    archive = tmp / "CIFAR-10-C.tar"
    archive.write_bytes(b"stand-in for the tar archive")
    return (architecture_on_cifar10c(tmp, archive), "architecture_study.cifar10c.root",
            [str(archive), "is a file", "extract"])


@case("architecture", new_check=True)
def _cifar10c_extracted_one_folder_deeper(tmp):
    write_official_cifar10c(tmp / "data" / "CIFAR-10-C" / "CIFAR-10-C")
    root = tmp / "data" / "CIFAR-10-C"
    return (architecture_on_cifar10c(tmp, root), "architecture_study.cifar10c.root",
            [str(root / "CIFAR-10-C" / "labels.npy"), f"set architecture_study.cifar10c.root to {root / 'CIFAR-10-C'}"])


@case("architecture")
def _finetune_corruption_not_prepared(tmp):
    return ({"architecture_study": {"cifar10c": {"corruptions": ["gaussian_noise", "fog"]},
                                    "finetune": {"corruptions": ["fog", "contrast"]}}},
            "architecture_study.finetune.corruptions", ["contrast"])


@case("architecture", new_check=True)
def _corruption_names_with_hyphens(tmp):
    return ({"architecture_study": {"cifar10c": {"corruptions": ["gaussian-noise", "fog"]},
                                    "finetune": {"corruptions": None}}},
            "architecture_study.cifar10c.corruptions", ["gaussian-noise", "did you mean 'gaussian_noise'"])


@case("architecture", new_check=True)
def _corruption_listed_twice(tmp):
    return ({"architecture_study": {"cifar10c": {"corruptions": ["fog", "contrast", "fog"]},
                                    "finetune": {"corruptions": None}}},
            "architecture_study.cifar10c.corruptions", ["['fog']", "more than once"])


@case("architecture", new_check=True)
def _empty_corruption_list(tmp):
    return ({"architecture_study": {"cifar10c": {"corruptions": []}, "finetune": {"corruptions": None}}},
            "architecture_study.cifar10c.corruptions", ["null"])


@case("architecture")
def _more_processes_than_gpus(tmp):
    models = default_models("architecture_study")
    models[0]["training"]["scratch"]["devices"] = 2
    return ({"architecture_study": {"models": models, "resources": {"gpu": 1}}},
            "architecture_study.models[0].training.scratch.devices", ["resources.gpu is 1"])


@case("architecture")
def _unregistered_timm_model(tmp):
    models = default_models("architecture_study")
    models[1]["name"] = "vit_base_patch16_224"
    return ({"architecture_study": {"models": models}}, "architecture_study.models[1].name",
            ["vit_base_patch16_224", "vit_small_patch16_224"])


@case("architecture")
def _pretrained_file_is_the_cache_folder(tmp):
    cache = tmp / "hf_cache" / "models--timm--resnet18.a1_in1k"
    cache.mkdir(parents=True)
    models = default_models("architecture_study")
    models[0].update(name="resnet18", pretrained_source="timm", pretrained_file=str(cache))
    return ({"architecture_study": {"models": models}}, "architecture_study.models[0].pretrained_file",
            [str(cache)])


@case("architecture", new_check=True, snakemake=True)
def _source_task_class_beyond_the_ten_classes(tmp):
    return ({"architecture_study": {"source_task": {"classes": [5, 6, 7, 8, 9, 10]}}},
            "architecture_study.source_task.classes", ["10", "0..9"])


@case("architecture")
def _seed_listed_twice(tmp):
    return {"architecture_study": {"seeds": [0, 1, 1]}}, "architecture_study.seeds", ["non-unique"]


@case("architecture")
def _baseline_with_the_long_init_name(tmp):
    return ({"architecture_study": {"baseline": "cnn-pretrained"}}, "architecture_study.baseline",
            ["cnn-pretrained", "cnn-pt"])


@case("architecture", new_check=True)
def _vit_heads_do_not_divide_the_width(tmp):
    models = default_models("architecture_study")
    models[1]["kwargs"] = {"patch_size": 8, "embed_dim": 64, "num_heads": 3}
    return ({"architecture_study": {"models": models}}, "architecture_study.models[1].kwargs.num_heads",
            ["64", "3"])


@case("architecture")
def _input_size_below_the_minimum(tmp):
    models = default_models("architecture_study")
    models[1]["input_size"] = 4
    return {"architecture_study": {"models": models}}, "architecture_study.models[1].input_size", ["4"]


# --- background study


@case("background", snakemake=True)
def _bg_challenge_without_mixed_rand_train(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "mixed_rand" / "train")
    return override, "background_study.bg_challenge.root", [str(root / "mixed_rand" / "train"), "method mixed_rand"]


@case("background")
def _bg_challenge_without_fg_mask_train(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "fg_mask" / "train")
    return override, "background_study.bg_challenge.root", [str(root / "fg_mask" / "train"), "method paired"]


@case("background")
def _bg_challenge_without_a_variations_val_folder(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "only_bg_t" / "val")
    return override, "background_study.bg_challenge.root", [str(root / "only_bg_t" / "val"), "test variation"]


@case("background")
def _bg_challenge_without_the_in9_training_set(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "original" / "train")
    return override, "background_study.bg_challenge.root", [str(root / "original" / "train"), "original.tar.gz"]


@case("background", new_check=True, snakemake=True)
def _bg_challenge_variation_missing_a_class(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "mixed_next" / "val" / "01_bird")
    return (override, "background_study.bg_challenge.root",
            [str(root / "mixed_next" / "val"), "['00_dog']", "['00_dog', '01_bird']"])


@case("background", new_check=True)
def _bg_challenge_variation_folder_left_empty(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "no_fg" / "val")
    (root / "no_fg" / "val").mkdir()
    return override, "background_study.bg_challenge.root", [str(root / "no_fg" / "val"), "no class folders"]


@case("background", new_check=True)
def _bg_challenge_class_folder_without_images(tmp):
    root, override = bg_challenge(tmp)
    for image in (root / "original" / "train" / "01_bird").iterdir():
        image.unlink()
    return (override, "background_study.bg_challenge.root",
            [str(root / "original" / "train" / "01_bird"), "no images"])


@case("background", new_check=True)
def _bg_challenge_masks_missing_a_class(tmp):
    root, override = bg_challenge(tmp)
    shutil.rmtree(root / "fg_mask" / "train" / "00_dog")
    return override, "background_study.bg_challenge.root", [str(root / "fg_mask" / "train"), "00_dog"]


@case("background", new_check=True)
def _bg_challenge_root_one_folder_too_high(tmp):
    root, override = bg_challenge(tmp)
    override["background_study"]["bg_challenge"]["root"] = str(tmp)
    return override, "background_study.bg_challenge.root", [str(tmp / "original" / "train"),
                                                            f"set it to {root}"]


@case("background")
def _generated_digit_as_large_as_the_image(tmp):
    return ({"background_study": {"generated": {"image_size": 24, "digit_size": 24}}},
            "background_study.generated.digit_size", ["24"])


@case("background")
def _generated_digit_below_the_generators_minimum(tmp):
    return ({"background_study": {"generated": {"digit_size": 6}}},
            "background_study.generated.digit_size", ["6", "[8,"])


@case("background")
def _more_processes_than_gpus(tmp):
    return ({"background_study": {"training": {"devices": 4}, "resources": {"gpu": 2}}},
            "background_study.training.devices", ["resources.gpu is 2"])


@case("background")
def _pretrained_resnet_without_weights(tmp):
    models = default_models("background_study")
    models[0] = {"id": "resnet50", "name": "resnet50", "pretrained": True,
                 "pretrained_file": str(tmp / "resnet50.safetensors")}
    return ({"background_study": {"models": models}}, "background_study.models[0].pretrained_file",
            [str(tmp / "resnet50.safetensors")])


@case("background", new_check=True, snakemake=True)
def _small_cnn_too_deep_for_the_generated_images(tmp):
    models = default_models("background_study")
    models[0]["kwargs"] = {"features": [16, 32, 64, 128, 256]}
    return ({"background_study": {"models": models}}, "background_study.models[0].kwargs.features",
            ["5 pooling blocks", "24"])


@case("background", new_check=True)
def _vit_patch_larger_than_the_image(tmp):
    models = default_models("background_study")
    models[1]["kwargs"]["patch_size"] = 32
    return ({"background_study": {"models": models}}, "background_study.models[1].kwargs.patch_size",
            ["32", "24"])


@case("background")
def _typo_in_the_influence_block(tmp):
    return ({"background_study": {"influence": {"top-k": 4}}}, "background_study.influence",
            ["'top-k'", "did you mean 'top_k'"])


@case("background")
def _reg_coeffs_as_a_single_number(tmp):
    return {"background_study": {"reg_coeffs": 10}}, "background_study.reg_coeffs", ["10 is not of type 'array'"]


@case("background")
def _more_generated_classes_than_digits(tmp):
    return ({"background_study": {"generated": {"n_classes": 12}}}, "background_study.generated.n_classes",
            ["12"])


# ----------------------------------------------------------------------------- the tests


def problem_lines(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("config key '")]


def assert_named(message: str, key: str, details: list[str]) -> None:
    """Some problem line quotes ``key`` and holds every detail (case-insensitive)."""
    lines = [line for line in problem_lines(message) if f"'{key}'" in line]
    assert lines, f"no problem names '{key}' in:\n{message}"
    assert any(all(detail.lower() in line.lower() for detail in details) for line in lines), (
        f"no problem of '{key}' holds all of {details}:\n" + "\n".join(lines))


def test_enough_cases_per_study():
    for study in ("loss", "learning_rule", "architecture", "background"):
        cases = [c for c in CASES if c.study == study]
        assert len(cases) >= 10, study
        assert sum(c.snakemake for c in cases) >= 3, study
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_stops_before_any_job_naming_the_key(bad: Case, tmp_path):
    data = tmp_path / "data_here"
    data.mkdir()
    override, key, details = bad.make(data)
    with pytest.raises(ConfigError) as error:
        validate(merged(DEFAULT, override), SCHEMA)
    message = str(error.value)
    assert_named(message, key, details)
    assert len(problem_lines(message)) == bad.problems, f"expected {bad.problems} problem(s):\n{message}"
    if bad.snakemake:
        workdir = workdir_with(tmp_path / "work", override)
        result = snakemake(workdir, "--cores", "1", "--configfile", str(workdir / "override.yaml"), check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert "invalid configuration" in output, output
        assert_named(output, key, details)
        assert not (workdir / "results").exists()


def test_one_problem_in_each_study_is_reported_in_one_run(tmp_path):
    root = write_image_folder_fixture(tmp_path / "road_images", classes=("no_road", "road", "unsure"))
    override = {
        "loss_study": {"training": {"schedule": "step", "step_size": 30}},
        "learning_rule_study": {"task": {"source": "folder", "root": str(root)}},
        "architecture_study": {"source_task": {"classes": [5, 6, 7, 8, 9, 10]}},
        "background_study": {"generated": {"image_size": 16, "digit_size": 16}},
    }
    expected = {"loss_study.training.step_size": ["30"],
                "learning_rule_study.task.root": [str(root), "unsure"],
                "architecture_study.source_task.classes": ["10"],
                "background_study.generated.digit_size": ["16"]}
    with pytest.raises(ConfigError) as error:
        validate(merged(DEFAULT, override), SCHEMA)
    for key, details in expected.items():
        assert_named(str(error.value), key, details)
    workdir = workdir_with(tmp_path / "work", override)
    result = snakemake(workdir, "--cores", "1", "--configfile", str(workdir / "override.yaml"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for key, details in expected.items():
        assert_named(output, key, details)
    assert not (workdir / "results").exists()


def test_good_data_in_the_real_layouts_passes(tmp_path):
    """The checks above reject mistakes, not the real layouts: the same trees, intact, validate."""
    road = write_image_folder_fixture(tmp_path / "road_images")
    bg_root = write_bg_challenge_fixture(tmp_path / "bg_challenge")
    cifar10c = write_official_cifar10c(tmp_path / "CIFAR-10-C")
    override = merged(architecture_on_cifar10c(tmp_path, cifar10c), {
        "loss_study": {"dataset": "cifar10"},
        "learning_rule_study": {"task": {"source": "folder", "root": str(road)}},
        "background_study": {"source": "bg_challenge", "bg_challenge": {"root": str(bg_root)}},
    })
    config = validate(merged(DEFAULT, override), SCHEMA)
    assert config["architecture_study"]["cifar10c"]["root"] == str(cifar10c)
    # Without the methods that need them, the challenge's training splits are not required.
    shutil.rmtree(bg_root / "mixed_rand" / "train")
    shutil.rmtree(bg_root / "fg_mask" / "train")
    validate(merged(DEFAULT, merged(override, {"background_study": {"methods": ["standard"]}})), SCHEMA)


def test_model_argument_catalog_matches_the_models():
    """config.py checks model kwargs without importing torch; its copy of the models' arguments must not drift."""
    import inspect

    from robustflow import config, models

    parameters = inspect.signature(models.small_cnn).parameters
    assert set(config.SMALL_CNN_KWARGS) == set(parameters) - {"num_classes", "img_size", "in_chans", "pretrained",
                                                              "pretrained_file"}
    assert tuple(parameters["features"].default) == config.SMALL_CNN_FEATURES
    assert config.VIT_MICRO_DEFAULTS == models.VIT_MICRO_DEFAULTS
    from robustflow.models.blurpool import MAX_FILTER_SIZE

    assert config.MAX_BLUR_FILTER == MAX_FILTER_SIZE


@pytest.mark.parametrize("section, entry", [("loss_study", "model"), ("background_study", "models"),
                                            ("repeatability_study", "models"), ("architecture_study", "models")])
def test_a_weights_file_that_would_never_be_loaded_is_rejected(section, entry, tmp_path):
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"only its presence is checked")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    model = config[section][entry] if entry == "model" else config[section][entry][0]
    model["pretrained_file"] = str(weights)  # pretrained stays false (source_task in the architecture study)
    key = f"{section}.{entry}" + ("" if entry == "model" else "[0]") + ".pretrained_file"
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(config, SCHEMA)
