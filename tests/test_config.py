"""Config validation: defaults, bad configs named by key, and the run table."""

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from robustflow.config import ConfigError, load_schema, validate_config
from robustflow.studies import validate
from robustflow.studies.background import plan as background_plan
from robustflow.studies.loss import plan as loss_plan
from tests.fixtures import write_bg_challenge_fixture, write_cifar10_fixture

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_is_valid_and_defaults_are_filled():
    config = validate(default_config(), SCHEMA)
    assert config["loss_study"]["training"]["step_gamma"] == 0.1  # not in config.yaml: schema default
    assert config["datasets"]["cifar10"]["root"] == "data/cifar10"
    assert config["loss_study"]["model"]["pretrained"] is False


def test_empty_config_gets_every_default():
    config = validate({}, SCHEMA)
    assert config["loss_study"]["dataset"] == "digits"
    assert config["noise_suite"]["levels"] == [0.0, 0.1, 0.2, 0.3, 0.5, 0.7]
    assert len(loss_plan.runs(config)) > 0


def test_validation_does_not_modify_its_input():
    config = default_config()
    before = copy.deepcopy(config)
    validate(config, SCHEMA)
    assert config == before


def _set(config: dict, dotted: str, value) -> dict:
    node = config
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node.setdefault(key, {})
    node[keys[-1]] = value
    return config


BAD_CONFIGS = [
    ("loss_study.sweep.0.loss", ["ce", "margn"], "loss_study.sweep[0].loss[1]"),
    ("loss_study.sweep.1.margin_lambda", [-1.0], "loss_study.sweep[1].margin_lambda[0]"),
    ("loss_study.trainng", {"epochs": 3}, "did you mean 'training'"),
    ("loss_study.training.epochs", 0, "loss_study.training.epochs"),
    ("loss_study.training.lr", "fast", "loss_study.training.lr"),
    ("loss_study.training.optimizer", "adam", "loss_study.training.optimizer"),
    ("noise_suite.types", ["gaussian", "blur"], "noise_suite.types[1]"),
    ("noise_suite.levels", [0.1, 1.5], "noise_suite.levels[1]"),
    ("device", "tpu", "device"),
    ("loss_study.seeds", [], "loss_study.seeds"),
    ("datasets.digits.val_fraction", 0.9, "datasets.digits.val_fraction"),
    ("loss_study.model.name", "resnet9000", "loss_study.model.name"),
    ("loss_study.baseline", "hinge", "loss_study.baseline"),
    ("loss_study.training.label_smoothing", 1.0, "loss_study.training.label_smoothing"),
    ("architecture_study.baseline", "mlp-scratch", "architecture_study.baseline"),
    ("architecture_study.finetune.corruptions", ["rain"], "architecture_study.finetune.corruptions"),
    ("learning_rule_study.constraints", [[0, 1, 2]], "learning_rule_study.constraints[0]"),
    ("learning_rule_study.methods", ["oja"], "learning_rule_study.methods[0]"),
    ("background_study.methods", ["standard", "cutout"], "background_study.methods[1]"),
    ("background_study.reg_coeffs", [0, -1], "background_study.reg_coeffs[1]"),
    ("background_study.pair_mode", "blur", "background_study.pair_mode"),
    ("background_study.models.0.name", "lenet", "background_study.models[0].name"),
    ("background_study.models.1.id", "Big-Net", "background_study.models[1].id"),
    ("background_study.models.1.id", "cnn", "model ids must be unique"),
    ("background_study.training.ema_decay", 0.9, "did you mean"),
    ("background_study.influence.seeds", [7], "background_study.influence.seeds"),
    ("background_study.generated.correlation", 1.5, "background_study.generated.correlation"),
    # JSON Schema alone would pass both: 8.0 counts as an integer there, NaN passes any bound.
    ("loss_study.training.epochs", 8.0, "loss_study.training.epochs': 8.0 is not of type 'integer'"),
    ("loss_study.training.lr", float("nan"), "loss_study.training.lr': nan is not of type 'number'"),
]


@pytest.mark.parametrize("key, value, expected", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_rejected_naming_the_key(key, value, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        validate(_set(default_config(), key, value), SCHEMA)


def test_missing_cifar10_names_the_path(tmp_path):
    config = _set(default_config(), "loss_study.dataset", "cifar10")
    _set(config, "datasets.cifar10.root", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError) as error:
        validate(config, SCHEMA)
    message = str(error.value)
    assert "loss_study.dataset" in message
    assert str(tmp_path / "nowhere") in message
    assert "cifar-10-python.tar.gz" in message


def test_present_cifar10_passes(tmp_path):
    write_cifar10_fixture(tmp_path)
    config = _set(default_config(), "loss_study.dataset", "cifar10")
    _set(config, "datasets.cifar10.root", str(tmp_path))
    assert validate(config, SCHEMA)["loss_study"]["dataset"] == "cifar10"


def loss_run_table(config: dict) -> pd.DataFrame:
    """The loss study's run table as a frame indexed by run id."""
    return pd.DataFrame(loss_plan.runs(config)).set_index("run", drop=False)


def test_run_table_expands_blocks_times_seeds():
    config = validate(default_config(), SCHEMA)
    runs = loss_run_table(config)
    variants = set(runs["variant"])
    assert variants == {
        "ce", "label_smoothing", "focal", "combined-lam1",
        "margin-lam0.1", "margin-lam1", "margin-lam10", "margin-lam20",
        "ce-ema", "margin-lam10-ema", "ce-mixup0.2",
    }
    assert len(runs) == len(variants) * len(config["loss_study"]["seeds"])
    assert runs.loc["margin-lam0.1-s2", "margin_lambda"] == 0.1
    assert runs.index.is_unique


def test_run_ids_are_stable_and_drop_unused_lambda():
    config = validate(
        {"loss_study": {"seeds": [7], "sweep": [{"loss": ["ce", "margin"], "margin_lambda": [1, 2]}]}},
        SCHEMA,
    )
    runs = loss_plan.runs(config)
    # ce ignores lambda, so the two lambdas collapse into one ce run.
    assert [run["run"] for run in runs] == ["ce-s7", "margin-lam1-s7", "margin-lam2-s7"]
    record = next(run for run in runs if run["run"] == "ce-s7")
    assert record["margin_lambda"] is None and record["seed"] == 7 and type(record["seed"]) is int


def test_job_config_excludes_sweep_so_new_seeds_keep_old_models():
    config = validate(default_config(), SCHEMA)
    more_seeds = copy.deepcopy(config)
    more_seeds["loss_study"]["seeds"] = [0, 1, 2, 3]
    for run in loss_plan.runs(config):
        for step in ("train", "evaluate"):
            assert loss_plan.job_config(config, step, run) == loss_plan.job_config(more_seeds, step, run)
        assert "noise_suite" in loss_plan.job_config(config, "evaluate", run)


def test_pretrained_without_weights_names_the_file_key(tmp_path):
    config = _set(default_config(), "loss_study.model.pretrained", True)
    _set(config, "loss_study.model.pretrained_file", str(tmp_path / "weights.pth"))
    with pytest.raises(ConfigError, match=r"loss_study\.model\.pretrained_file"):
        validate(config, SCHEMA)


def test_more_data_parallel_processes_than_gpus_is_rejected():
    config = _set(default_config(), "loss_study.training.devices", 2)
    _set(config, "loss_study.resources.gpu", 1)
    with pytest.raises(ConfigError, match=r"loss_study\.training\.devices"):
        validate(config, SCHEMA)
    _set(config, "loss_study.resources.gpu", 0)  # CPU data parallelism (gloo) needs no GPU
    assert validate(config, SCHEMA)["loss_study"]["training"]["devices"] == 2


def test_timm_pretrained_model_without_weights_names_the_file_key(tmp_path):
    config = default_config()
    config["architecture_study"]["models"][0].update(
        name="resnet18", pretrained_source="timm", pretrained_file=str(tmp_path / "resnet18.safetensors"))
    with pytest.raises(ConfigError, match=r"architecture_study\.models\[0\]\.pretrained_file"):
        validate(config, SCHEMA)


def test_folder_task_without_folder_names_the_key(tmp_path):
    config = _set(default_config(), "learning_rule_study.task.source", "folder")
    _set(config, "learning_rule_study.task.root", str(tmp_path / "road"))
    with pytest.raises(ConfigError, match=r"learning_rule_study\.task\.root"):
        validate(config, SCHEMA)


def test_bg_challenge_source_without_the_release_names_the_key(tmp_path):
    config = _set(default_config(), "background_study.source", "bg_challenge")
    _set(config, "background_study.bg_challenge.root", str(tmp_path / "bg_challenge"))
    with pytest.raises(ConfigError) as error:
        validate(config, SCHEMA)
    message = str(error.value)
    assert "background_study.bg_challenge.root" in message and str(tmp_path / "bg_challenge") in message
    assert "MadryLab/backgrounds_challenge" in message
    write_bg_challenge_fixture(tmp_path / "bg_challenge")
    assert validate(config, SCHEMA)["background_study"]["source"] == "bg_challenge"


def test_background_models_get_model_defaults():
    config = _set(default_config(), "background_study.models", [{"id": "tiny", "name": "small_cnn"}])
    model = validate(config, SCHEMA)["background_study"]["models"][0]
    assert model == {"id": "tiny", "name": "small_cnn", "kwargs": {}, "pretrained": False, "pretrained_file": None}


def test_background_job_config_excludes_the_run_grid():
    config = validate(default_config(), SCHEMA)
    wider = copy.deepcopy(config)
    wider["background_study"]["seeds"] = [0, 1, 2, 3]
    wider["background_study"]["reg_coeffs"] = [0, 1, 10, 100]
    runs = background_plan.runs(config)

    def run_job_configs(cfg):
        return [background_plan.job_config(cfg, step, run) for run in runs for step in ("train", "evaluate", "influence")]

    assert run_job_configs(config) == run_job_configs(wider)
    wider["background_study"]["training"]["epochs"] = 1
    assert all(background_plan.job_config(config, "train", run) != background_plan.job_config(wider, "train", run)
               for run in runs)
    # Retraining never regenerates the image set.
    assert background_plan.job_config(config, "generate_set") == background_plan.job_config(wider, "generate_set")


def test_problems_in_several_studies_are_reported_at_once():
    config = _set(default_config(), "loss_study.baseline", "hinge")
    _set(config, "architecture_study.cifar10c.corruptions", ["gaussian_noise", "acid_rain"])
    _set(config, "architecture_study.models.1.id", "cnn")
    validate_config(config, SCHEMA)  # the schema alone has nothing against it: these are the studies' checks
    with pytest.raises(ConfigError) as error:
        validate(config, SCHEMA)
    message = str(error.value)
    for key, detail in (("loss_study.baseline", "hinge"),
                        ("architecture_study.cifar10c.corruptions", "acid_rain"),
                        ("architecture_study.models", "model ids must be unique")):
        line = next((line for line in message.splitlines() if f"'{key}'" in line), None)
        assert line is not None, f"{key} not named in:\n{message}"
        assert detail in line


def test_light_catalogs_match_the_libraries_they_stand_for():
    from torchvision.datasets import CIFAR10

    from robustflow.data_files import CIFAR10_FILES, CIFAR10_FOLDER, CIFAR10_URL
    from robustflow.model_catalog import MODEL_NAMES
    from robustflow.models import list_models

    assert CIFAR10_FILES == (CIFAR10.meta["filename"], *(name for name, _ in CIFAR10.train_list),
                             *(name for name, _ in CIFAR10.test_list))
    assert CIFAR10_FOLDER == CIFAR10.base_folder and CIFAR10_URL == CIFAR10.url
    assert len(set(MODEL_NAMES)) == len(MODEL_NAMES)
    assert sorted(MODEL_NAMES) == sorted(list_models())


def test_train_settings_reject_a_key_that_is_no_setting():
    from robustflow.training import TrainSettings

    assert TrainSettings.from_config({"epochs": 3}, seed=1).epochs == 3
    with pytest.raises(ValueError, match="warmup_epochs"):
        TrainSettings.from_config({"epochs": 3, "warmup_epochs": 2})
