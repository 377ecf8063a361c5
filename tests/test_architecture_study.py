"""The architecture study's DAG steps on a tiny config (tiny models, 1 epoch, 2 corruptions)."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from robustflow.claims import NOT_TESTABLE, VERDICTS
from robustflow.config import ConfigError, load_schema
from robustflow.corruptions import SEVERITIES
from robustflow.data.cifar10c import check_cifar10c, load_cifar10c
from robustflow.jobs import files
from robustflow.plots.architecture import FIGURES
from robustflow.studies import STUDIES, validate
from robustflow.studies.architecture import claims, plan, steps, summary
from robustflow.training import predict_logits
from tests.fixtures import write_cifar10_fixture

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")
CORRUPTIONS = ["gaussian_noise", "contrast"]
TRAINING = dict(epochs=1, batch_size=128, optimizer="adamw", lr=1e-3, momentum=0.9, weight_decay=5e-4,
                schedule="cosine", step_size=10, step_gamma=0.1, crop_padding=0, flip=False, eval_batch_size=512)


def tiny_config(dataset: str = "digits", cifar10_root: str | None = None, cifar10c_root: str | None = None) -> dict:
    def model(model_id: str, family: str, name: str, kwargs: dict) -> dict:
        return {"id": model_id, "family": family, "name": name, "kwargs": kwargs, "input_size": None,
                "pretrained_source": "source_task", "pretrained_file": None,
                "training": {"scratch": dict(TRAINING), "pretrained": dict(TRAINING)}}

    cifar10 = {"split_seed": 0, "val_fraction": 0.1, "verify_md5": False}
    if cifar10_root is not None:  # the schema's root is a string; unset, the default fills it
        cifar10["root"] = cifar10_root
    return {
        "device": "cpu",
        "datasets": {
            "digits": {"split_seed": 0, "val_fraction": 0.15, "test_fraction": 0.15},
            "cifar10": cifar10,
        },
        # only this study is switched on, so validation runs only its checks
        **{section: {"enabled": False} for section in STUDIES if section != plan.SECTION},
        "architecture_study": {
            "enabled": True, "dataset": dataset, "seeds": [0], "baseline": "cnn-scratch", "eval_batch_size": 512,
            "cifar10c": {"root": cifar10c_root, "corruptions": CORRUPTIONS, "seed": 7},
            "source_task": {"classes": [0, 1, 2, 3, 4], "training": dict(TRAINING)},
            "models": [
                model("cnn", "cnn", "small_cnn", {"features": [4]}),
                model("vit", "vit", "vit_micro", {"patch_size": 8, "embed_dim": 8, "depth": 1, "num_heads": 2}),
            ],
            "finetune": {"corruptions": None, "epochs": 1, "lr_scale": 1.0, "group_by": "run", "split_seed": 0},
        },
    }


def prepare(config: dict, manifest: Path) -> Path:
    """The prepare_cifar10c step as Snakemake calls it; returns the manifest it wrote."""
    steps.prepare_cifar10c(plan.job_config(config, "prepare_cifar10c"), {}, files(), files(manifest=manifest))
    return manifest


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every DAG step once on the tiny config; returns the config and the output folder."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("architecture")
    config = validate(tiny_config(), SCHEMA)
    manifest = prepare(config, out / "cifar10c" / "manifest.json")
    for model_id in ("cnn", "vit"):
        job = {"model": model_id, "seed": 0}
        steps.pretrain(plan.job_config(config, "pretrain", job), job, files(),
                       files(model=out / f"source_{model_id}.pt", history=out / f"source_{model_id}.csv"))
    paths = {"history": [], "test": [], "robustness": [], "finetune": []}
    for run in plan.runs(config):
        name = run["run"]
        pretrained = out / f"source_{run['model']}.pt" if plan.source_task_weights(config, run) else []
        steps.train(plan.job_config(config, "train", run), run, files(pretrained=pretrained),
                    files(model=out / f"{name}.pt", history=out / f"{name}_history.csv", test=out / f"{name}_test.csv"))
        steps.evaluate(plan.job_config(config, "evaluate", run), run,
                       files(model=out / f"{name}.pt", manifest=manifest),
                       files(robustness=out / f"{name}_robustness.csv"))
        for group in plan.finetune_groups(config):
            job = {**run, "group": group}
            steps.finetune(plan.job_config(config, "finetune", job), job,
                           files(model=out / f"{name}.pt", manifest=manifest),
                           files(finetune=out / f"{name}_{group}_finetune.csv"))
            paths["finetune"].append(out / f"{name}_{group}_finetune.csv")
        for kind in ("history", "test", "robustness"):
            paths[kind].append(out / f"{name}_{kind}.csv")
    outputs = {k: out / f"all_{k}.csv" for k in
               ("history", "robustness", "finetune", "runs", "corruption_errors", "summary", "claims")}
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**paths), files(**outputs))
    return config, out, manifest, {k: pd.read_csv(v) for k, v in outputs.items()}


def test_runs_cover_models_times_inits():
    runs = pd.DataFrame(plan.runs(tiny_config())).set_index("run", drop=False)
    assert sorted(runs.index) == ["cnn-pt-s0", "cnn-scratch-s0", "vit-pt-s0", "vit-scratch-s0"]
    assert set(runs["init"]) == {"scratch", "pretrained"}


def test_prepare_generates_the_layout_from_the_test_split(pipeline):
    config, _, manifest, _ = pipeline
    root = steps.cifar10c_root(manifest)
    check_cifar10c(root, CORRUPTIONS)
    data = steps.study_data(config)
    images, labels = load_cifar10c(root, "gaussian_noise", 3)
    assert torch.equal(labels, data.test_y)
    assert images.shape == data.test_x.shape and not torch.equal(images, data.test_x)
    contrast_low, _ = load_cifar10c(root, "contrast", 5)
    # contrast pulls pixels towards each image's mean: the spread shrinks
    assert contrast_low.float().std() < data.test_x.float().std()


def test_prepare_uses_official_files_when_present(tmp_path):
    cifar_root = tmp_path / "cifar10"
    write_cifar10_fixture(cifar_root, n_per_batch=20, n_test=20)
    official = tmp_path / "CIFAR-10-C"
    official.mkdir()
    config = validate(tiny_config("cifar10", str(cifar_root), str(official)), SCHEMA)
    test_y = steps.study_data(config).test_y.numpy()
    np.save(official / "labels.npy", np.tile(test_y, 5))
    rng = np.random.default_rng(0)
    for name in CORRUPTIONS:
        np.save(official / f"{name}.npy", rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8))
    manifest = prepare(config, tmp_path / "prepared" / "manifest.json")
    assert steps.cifar10c_root(manifest) == official.resolve()
    assert not (tmp_path / "prepared" / "data").exists()

    np.save(official / "labels.npy", np.tile((test_y + 1) % 10, 5))
    with pytest.raises(ValueError, match="labels.npy"):
        prepare(config, tmp_path / "prepared" / "manifest.json")


def test_prepare_generates_for_cifar10_without_official_files(tmp_path):
    cifar_root = tmp_path / "cifar10"
    write_cifar10_fixture(cifar_root, n_per_batch=20, n_test=20)
    config = validate(tiny_config("cifar10", str(cifar_root), str(tmp_path / "absent")), SCHEMA)
    manifest = prepare(config, tmp_path / "prepared" / "manifest.json")
    assert steps.cifar10c_root(manifest) == (tmp_path / "prepared" / "data").resolve()
    check_cifar10c(steps.cifar10c_root(manifest), CORRUPTIONS)


@pytest.mark.parametrize("n", [20, 270, 10000])
def test_finetune_split_is_first_90_percent_and_last_10_percent(n):
    train, val, test = steps.finetune_split(n, seed=0)
    n_trainval = n * 9 // 10
    assert test.tolist() == list(range(n_trainval, n))
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n_trainval))
    assert len(val) == round(n_trainval / 10)
    again = steps.finetune_split(n, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))


def test_source_task_keeps_only_its_classes_renumbered():
    data = steps.study_data(tiny_config())
    source = steps.source_task_data(data, [3, 7])
    assert source.num_classes == 2 and len(source.test_y) == 0
    expected = data.train_x[(data.train_y == 3) | (data.train_y == 7)]
    assert torch.equal(source.train_x, expected)
    assert torch.equal(source.train_y, (data.train_y[(data.train_y == 3) | (data.train_y == 7)] == 7).long())
    with pytest.raises(ValueError, match="source_task.classes"):
        steps.source_task_data(data, [3, 10])


def test_pretrained_arm_starts_from_the_source_weights(pipeline):
    config, out, _, _ = pipeline
    source = torch.load(out / "source_cnn.pt", weights_only=False)
    model = steps.build_model(config, "cnn", 10, 32, seed=0, pretrained_file=out / "source_cnn.pt", pretrained=True)
    state = model.state_dict()
    assert state["head.weight"].shape == (10, source["head.weight"].shape[1])  # new head for 10 classes
    for key, value in source.items():
        if not key.startswith("head."):
            assert torch.equal(state[key], value), key


def test_resized_input_feeds_the_model_its_own_size():
    config = tiny_config()
    config["architecture_study"]["models"][1]["input_size"] = 16
    model = steps.build_model(config, "vit", 10, 32, seed=0)
    assert isinstance(model, steps.ResizedInput)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_train_model_writes_history_and_test_metrics(pipeline):
    _, out, _, _ = pipeline
    history = pd.read_csv(out / "cnn-scratch-s0_history.csv")
    test = pd.read_csv(out / "cnn-scratch-s0_test.csv")
    assert history["epoch"].tolist() == [1]
    assert {"train_top1", "val_top1", "val_loss"} <= set(history.columns)
    assert len(test) == 1 and 0 <= test["test_top1"].iloc[0] <= test["test_top5"].iloc[0] <= 1


def test_evaluation_covers_clean_and_every_cell(pipeline):
    _, out, _, _ = pipeline
    robustness = pd.read_csv(out / "vit-pt-s0_robustness.csv")
    expected = {("clean", 0)} | {(c, s) for c in CORRUPTIONS for s in SEVERITIES}
    assert set(zip(robustness["corruption"], robustness["severity"])) == expected
    assert len(robustness) == len(expected)
    # the clean row is the Exp 1 test evaluation of the same weights
    test = pd.read_csv(out / "vit-pt-s0_test.csv")
    clean = robustness[robustness["corruption"] == "clean"].iloc[0]
    assert clean["top1"] == pytest.approx(test["test_top1"].iloc[0])
    assert (robustness["n_images"] == 270).all()


def test_finetuning_rows_per_corruption_and_severity(pipeline):
    _, out, _, _ = pipeline
    finetune = pd.read_csv(out / "cnn-pt-s0_all_finetune.csv")
    assert set(zip(finetune["corruption"], finetune["severity"])) == {(c, s) for c in CORRUPTIONS for s in SEVERITIES}
    assert (finetune["n_images"] == 27).all()  # the last 10% of the 270 test images
    np.testing.assert_allclose(finetune["top1_improvement"], finetune["top1"] - finetune["top1_before"])
    # "before" is the Exp 1 model on exactly the last 10% of each severity block
    config, _, manifest, _ = pipeline
    model = steps.build_model(config, "cnn", 10, 32, seed=0)
    model.load_state_dict(torch.load(out / "cnn-pt-s0.pt", weights_only=False)["state"])
    data = steps.study_data(config)
    for row in finetune.itertuples():
        images, labels = load_cifar10c(steps.cifar10c_root(manifest), row.corruption, row.severity)
        logits = predict_logits(model, images[243:], data.mean, data.std)
        assert row.top1_before == pytest.approx(float((logits.argmax(1) == labels[243:]).double().mean()))


def test_finetune_groups_by_corruption():
    config = tiny_config()
    config["architecture_study"]["finetune"]["group_by"] = "corruption"
    assert plan.finetune_groups(config) == {c: [c] for c in CORRUPTIONS}
    job = {**plan.runs(config)[0], "group": "all"}
    with pytest.raises(ValueError, match="group"):
        steps.finetune(plan.job_config(config, "finetune", job), job, files(model="m.pt", manifest="manifest.json"),
                       files(finetune="out.csv"))
    # a fine-tuning corruption without CIFAR-10-C files is refused when the config is checked
    config["architecture_study"]["finetune"]["corruptions"] = ["fog"]
    with pytest.raises(ConfigError, match="finetune.corruptions': \\['fog'\\]"):
        validate(config, SCHEMA)


def directional_ids(config: dict, claim_set) -> list[str]:
    """Ids of the directional claims of ``claim_set``: per model for `claims.PER_MODEL_CLAIMS`."""
    models = [spec["id"] for spec in config[plan.SECTION]["models"]]
    return [f"{model}_{claim.claim_id}" if claim in claims.PER_MODEL_CLAIMS else claim.claim_id
            for claim in claim_set for model in (models if claim in claims.PER_MODEL_CLAIMS else [None])]


def test_aggregate_tables_and_claims(pipeline):
    config, _, _, tables = pipeline
    runs = tables["runs"].set_index("variant")
    assert sorted(runs.index) == ["cnn-pt", "cnn-scratch", "vit-pt", "vit-scratch"]
    assert runs.loc["cnn-scratch", "mce"] == pytest.approx(1.0)
    np.testing.assert_allclose(runs["mean_c_top1"], 1 - runs["mean_error"])
    assert len(tables["summary"]) == 4
    table = tables["claims"]
    assert set(table["verdict"]) <= set(VERDICTS)
    numeric = table[table["claim_id"].str.endswith("_clean_top1")]
    assert len(numeric) == 4 and (numeric["verdict"] == "not comparable").all()
    assert numeric["reason"].str.contains("embedded default").all()
    directional = table.set_index("claim_id").loc[directional_ids(config, claims.DIRECTIONAL_CLAIMS)]
    assert (directional["verdict"] != "not comparable").all()
    seeds = len(runs) // 4  # four variants
    assert directional.loc["cnn_pretraining_raises_corrupted_accuracy", "n"] == seeds  # a pair per seed
    assert directional.loc["vit_more_robust_than_cnn", "n"] == 2 * seeds  # a pair per (init, seed)


def test_every_figure_renders_with_labelled_axes(pipeline):
    config, _, _, tables = pipeline
    for name, make in FIGURES.items():
        fig = make(tables, plan.job_config(config, "figure", {"figure": name}))
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            assert ax.get_xlabel() and ax.get_ylabel(), name
        plt.close(fig)


def test_unknown_model_id_is_named():
    with pytest.raises(ValueError, match="'resnet'"):
        steps.model_spec(tiny_config(), "resnet")


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest"):
        steps.cifar10c_root(Path(tmp_path) / "nope.json")


def test_comparisons_of_unconverged_runs_are_not_testable(pipeline):
    # A few epochs cannot show convergence, so every claim that compares trained variants says so;
    # fine-tuning and severity compare each model with itself and are judged on their intervals.
    config, _, _, tables = pipeline
    directional = tables["claims"].set_index("claim_id")
    within = directional_ids(config, claims.WITHIN_MODEL_CLAIMS)
    compared = directional.loc[[claim for claim in directional_ids(config, claims.DIRECTIONAL_CLAIMS)
                                if claim not in within]]
    compared = compared[compared["n"] >= 2]  # one seed gives one pair per model: inconclusive
    assert len(compared) and (compared["verdict"] == NOT_TESTABLE).all()
    assert compared["reason"].str.contains("too few epochs to check convergence").all()
    assert not directional.loc[within, "reason"].str.contains("convergence").any()


def test_severity_claim_pairs_the_lowest_and_highest_severity_by_hand():
    rows = [{"run": "r", "corruption": corruption, "severity": severity, "top1": top1}
            for corruption, values in {"fog": (0.9, 0.8, 0.5), "snow": (0.6, 0.7, 0.7)}.items()
            for severity, top1 in zip((1, 3, 5), values)]
    rows.append({"run": "r", "corruption": "clean", "severity": 0, "top1": 1.0})
    assert claims._severity_drops(pd.DataFrame(rows)) == pytest.approx([(0.4 - 0.1) / 2])  # fog and snow, one run
