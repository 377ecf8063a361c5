"""The repeatability study's steps on a tiny config, as the rules call them: the shared sets,
every training method, the evaluation tables, the aggregate (rates, agreement, claims)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from robustflow.claims import NOT_TESTABLE, VERDICTS
from robustflow.config import ConfigError, load_schema
from robustflow.data_files import CIFAR10P_FRAMES
from robustflow.jobs import files
from robustflow.perturbations import FRAMES
from robustflow.studies import STUDIES, validate
from robustflow.studies.repeatability import claims, plan, steps, summary
from tests.fixtures import write_cifar10_fixture, write_cifar10p_fixture

SCHEMA = load_schema(Path(__file__).resolve().parents[1] / "config" / "schema.yaml")
NAMES = ["gaussian_noise", "translate", "rotate"]


def tiny_config(**study) -> dict:
    return {
        "device": "cpu",
        **{section: {"enabled": False} for section in STUDIES if section != plan.SECTION},
        plan.SECTION: {
            "models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8]}}],
            "methods": [{"id": "standard", "objective": "standard"},
                        {"id": "anti_aliased", "objective": "standard", "blur_filter": 3},
                        {"id": "augmix", "objective": "augmix"},
                        {"id": "stability", "objective": "stability", "params": {"alpha": 1.0, "sigma": 0.1}},
                        {"id": "rotation", "objective": "rotation_head", "params": {"weight": 0.5}},
                        {"id": "patch_gaussian", "objective": "patch_gaussian",
                         "params": {"max_width": 8, "max_sigma": 0.5}},
                        {"id": "noise", "objective": "gaussian_noise", "params": {"sigma": 0.1}}],
            "seeds": [0, 1],
            "training": {"epochs": 1, "batch_size": 128},
            "perturbations": {"n_images": 12, "names": NAMES},
            "cifar10c": {"corruptions": ["contrast"]},
            "shifts": {"max_shift": 2},
            "translate_images": 2,
            **study,
        },
    }


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    torch.set_num_threads(1)
    config = validate(tiny_config(), SCHEMA)
    out = tmp_path_factory.mktemp("repeatability")
    sequences, cifar10c = out / "cifar10p" / "manifest.json", out / "cifar10c" / "manifest.json"
    steps.prepare_sequences(plan.job_config(config, "prepare_sequences"), {}, files(), files(manifest=sequences))
    steps.prepare_cifar10c(plan.job_config(config, "prepare_cifar10c"), {}, files(), files(manifest=cifar10c))
    tables = {name: [] for name in summary.TABLES}
    for run in plan.runs(config):
        folder = out / run["run"]
        model = folder / "model.pt"
        steps.train(plan.job_config(config, "train", run), run, files(),
                    files(model=model, history=folder / "history.csv"))
        outputs = {name: folder / f"{name}.csv" for name in summary.TABLES if name != "history"}
        steps.evaluate(plan.job_config(config, "evaluate", run), run,
                       files(model=model, sequences=sequences, cifar10c=cifar10c), files(**outputs))
        for name in summary.TABLES:
            tables[name].append(folder / f"{name}.csv")
    names = ["history", "perturbations", "shifts", "corruptions", "translate", "runs", "agreement", "summary",
             "claims"]
    aggregated = {name: out / "tables" / f"{name}.csv" for name in names}
    summary.aggregate(plan.job_config(config, "aggregate"), {}, files(**tables), files(**aggregated))
    return config, out, {name: pd.read_csv(path) for name, path in aggregated.items()}


def test_runs_are_models_times_methods_times_seeds():
    runs = plan.runs(tiny_config())
    assert len(runs) == 1 * 7 * 2 and len({run["run"] for run in runs}) == len(runs)
    assert runs[0]["run"] == "cnn-standard-s0"


def test_the_sequences_are_shared_and_in_the_official_layout(pipeline):
    _, out, _ = pipeline
    for name in NAMES:
        frames = np.load(out / "cifar10p" / "data" / f"{name}.npy")
        assert frames.shape == (12, FRAMES[name], 32, 32, 3) and frames.dtype == np.uint8
    assert CIFAR10P_FRAMES == dict(FRAMES)


def test_flip_probabilities_and_rates(pipeline):
    _, _, tables = pipeline
    perturbations = tables["perturbations"]
    assert len(perturbations) == 14 * len(NAMES)
    assert perturbations["flip_probability"].between(0, 1).all()
    assert (perturbations["top5_distance"] >= 0).all()
    assert set(perturbations.loc[perturbations["noise"], "perturbation"]) == {"gaussian_noise"}
    # Rates divide by the baseline variant of the same seed: the baseline's own rate is 1 (or
    # undefined where it never flips).
    base = perturbations[perturbations["variant"] == "cnn-standard"]
    rates = base["flip_rate"].dropna()
    assert np.allclose(rates, 1.0)
    defined = base["flip_probability"] > 0
    assert base.loc[~defined, "flip_rate"].isna().all()


def test_translate_probabilities_follow_the_sequence(pipeline):
    _, _, tables = pipeline
    translate = tables["translate"]
    one = translate[translate["run"] == "cnn-standard-s0"]
    assert len(one) == 2 * FRAMES["translate"]
    assert sorted(one["shift"].unique()) == list(range(-7, 9))
    assert one["top_class_probability"].between(0, 1).all()


def test_shift_protocols(pipeline):
    _, _, tables = pipeline
    shifts = tables["shifts"]
    one = shifts[shifts["run"] == "cnn-standard-s0"].set_index(["protocol", "distance"])
    assert set(one.index) == {("random_shift", 1), ("random_shift", 2), ("crop_shift", 1), ("embed_translate", 1),
                              ("embed_scale", 1)}
    assert np.allclose(one["consistency"] + one["top1_change"], 1.0)
    assert shifts["top_class_probability_change"].between(0, 1).all()


def test_agreement_matrix_and_kappa(pipeline):
    _, _, tables = pipeline
    agreement = tables["agreement"]
    assert (agreement.loc[agreement["seed_a"] == agreement["seed_b"], "disagreement"] == 0).all()
    pairs = agreement.set_index(["variant", "seed_a", "seed_b"])["disagreement"]
    assert pairs.loc[("cnn-standard", 0, 1)] == pairs.loc[("cnn-standard", 1, 0)]
    assert agreement.groupby("variant")["fleiss_kappa"].nunique().eq(1).all()


def test_runs_summary_and_claims(pipeline):
    config, _, tables = pipeline
    runs = tables["runs"].set_index("run")
    assert len(runs) == 14
    # mean corruption error over the study's CIFAR-10-C cells (one corruption x 5 severities)
    corruptions = tables["corruptions"]
    cells = corruptions[(corruptions["run"] == "cnn-augmix-s1") & (corruptions["corruption"] != "clean")]
    assert runs.loc["cnn-augmix-s1", "mean_corruption_error"] == pytest.approx(cells["error"].mean())
    assert runs.loc["cnn-standard-s0", "mce"] == pytest.approx(1.0)
    table = tables["claims"]
    assert set(table["verdict"]) <= set(VERDICTS)
    expected = {claims.LITERATURE[0].name, *(item.name for item in claims.DIRECTIONAL)}
    assert {claim.removeprefix("cnn_") for claim in table["claim_id"]} >= expected
    # Literature numbers from other data are shown beside the measurement, never judged here.
    literature = table[table["claim_id"] == "cnn_augmix_cifar10c_error"].iloc[0]
    assert literature["verdict"] == "not comparable" and np.isfinite(literature["measured_mean"])
    # Judged only when both arms beat chance (10 classes, margin 0.1) and converged: one epoch
    # cannot show convergence, so whether or not the arms learned, not testable here.
    directional = table[table["claim_id"] == "cnn_anti_aliasing_raises_consistency"].iloc[0]
    arms = runs[runs["method"].isin(["standard", "anti_aliased"])]["clean_top1"]
    reason = "no better than chance" if arms.min() < 0.2 else "too few epochs to check convergence"
    assert directional["verdict"] == NOT_TESTABLE and reason in directional["reason"], directional["reason"]


def test_rotation_runs_save_the_task_model_only(pipeline):
    _, out, _ = pipeline
    state = torch.load(out / "cnn-rotation-s0" / "model.pt", weights_only=True)["state"]
    assert not any("rotation_head" in key for key in state)


@pytest.mark.parametrize("edit, key", [
    ({"perturbations": {"names": ["glitter"]}}, "repeatability_study.perturbations.names[0]"),
    ({"methods": [{"id": "standard", "objective": "dropout_magic"}]}, "repeatability_study.methods[0].objective"),
    ({"shifts": {"max_shift": 40}}, "repeatability_study.shifts.max_shift"),
    ({"baseline": "cnn-plain"}, "repeatability_study.baseline"),
    ({"methods": [{"id": "standard", "objective": "standard"}, {"id": "standard", "objective": "augmix"}]},
     "repeatability_study.methods"),
    ({"methods": [{"id": "standard", "objective": "standard", "blur_filter": 9}]},
     "repeatability_study.methods[0].blur_filter"),
    ({"cifar10c": {"corruptions": ["acid_rain"]}}, "repeatability_study.cifar10c.corruptions"),
    ({"methods": [{"id": "standard", "objective": "standard", "params": {"alpha": 1.0}}]},
     "repeatability_study.methods[0].params"),
    ({"methods": [{"id": "stable", "objective": "stability", "params": {"alpha": 1.0}}]},
     "repeatability_study.methods[0].params"),
    ({"perturbations": {"root": "somewhere"}}, "repeatability_study.perturbations.root"),
    ({"methods": [{"id": "standard", "objective": "standard"},
                  {"id": "augmix", "objective": "augmix", "params": {"severity": 50}}]},
     "repeatability_study.methods[1].params.severity"),
    ({"methods": [{"id": "standard", "objective": "standard"},
                  {"id": "augmix", "objective": "augmix", "params": {"ops": ["color"]}}]},
     "repeatability_study.methods[1].params.ops[0]"),
    ({"methods": [{"id": "standard", "objective": "standard"},
                  {"id": "stable", "objective": "stability", "params": {"alpha": -1, "sigma": 0.1}}]},
     "repeatability_study.methods[1].params.alpha"),
    ({"methods": [{"id": "standard", "objective": "standard"},
                  {"id": "patch", "objective": "patch_gaussian", "params": {"max_width": "x", "max_sigma": 1}}]},
     "repeatability_study.methods[1].params.max_width"),
    ({"methods": [{"id": "standard", "objective": "standard"},
                  {"id": "anti_aliased", "objective": "standard", "blur_filter": 1}]},
     "repeatability_study.methods[1].blur_filter"),
    ({"models": [{"id": "cnn", "name": "small_cnn", "kwargs": {"features": [4, 8], "blur_filter": 3}}]},
     "repeatability_study.models[0].kwargs.blur_filter"),
    ({"models": [{"id": "cnn", "name": "vit_micro", "kwargs": {"patch_size": 8}}]},
     "repeatability_study.models[0].name"),
    ({"translate_images": 20}, "repeatability_study.translate_images"),
    ({"training": {"epochs": 2, "schedule": "step", "step_size": 5}}, "repeatability_study.training.step_size"),
])
def test_bad_config_names_the_key(edit, key):
    config = tiny_config()
    config[plan.SECTION].update(edit)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        validate(config, SCHEMA)


def test_official_files_are_read_for_the_first_n_images(tmp_path):
    """perturbations.n_images holds for official files too: every run evaluates the first n."""
    import json

    from robustflow.data.cifar10p import load_cifar10p

    write_cifar10_fixture(tmp_path / "cifar")
    official = write_cifar10p_fixture(tmp_path / "cifar10p", NAMES)
    config = tiny_config(dataset="cifar10", perturbations={"names": NAMES, "root": str(official), "n_images": 5})
    config["datasets"] = {"cifar10": {"root": str(tmp_path / "cifar"), "verify_md5": False}}
    config = validate(config, SCHEMA)
    manifest = tmp_path / "manifest.json"
    steps.prepare_sequences(plan.job_config(config, "prepare_sequences"), {}, files(), files(manifest=manifest))
    sequences = json.loads(manifest.read_text())
    assert sequences["source"] == "official" and sequences["n_images"] == 5
    first = load_cifar10p(sequences["root"], "rotate", sequences["n_images"])  # as evaluate reads them
    assert torch.equal(first, load_cifar10p(official, "rotate")[:5])


def test_official_files_of_the_wrong_shape_are_rejected_naming_the_file(tmp_path):
    write_cifar10_fixture(tmp_path / "cifar")
    official = write_cifar10p_fixture(tmp_path / "cifar10p", NAMES)
    config = tiny_config(dataset="cifar10", perturbations={"names": NAMES, "root": str(official)})
    config["datasets"] = {"cifar10": {"root": str(tmp_path / "cifar")}}
    assert validate(config, SCHEMA)[plan.SECTION]["perturbations"]["root"] == str(official)
    np.save(official / "gaussian_noise.npy", np.zeros((19, 31, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"gaussian_noise.npy: shape \(19, 31, 32, 32, 3\) uint8, expected "
                                          r"\(20, 31, 32, 32, 3\) uint8 \(one sequence of 31 frames per test image"):
        validate(config, SCHEMA)  # the CIFAR-10 fixture's test batch holds 20 images
    np.save(official / "rotate.npy", np.zeros((2, 31, 28, 28, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="rotate.npy"):
        validate(config, SCHEMA)
    (official / "translate.npy").unlink()
    with pytest.raises(ConfigError, match="translate.npy does not exist"):
        validate(config, SCHEMA)


def test_translate_images_matter_only_with_the_translate_sequence():
    config = tiny_config(perturbations={"n_images": 2, "names": ["gaussian_noise"]}, translate_images=4)
    assert validate(config, SCHEMA)[plan.SECTION]["translate_images"] == 4  # nothing drawn: no limit


def test_every_problem_of_the_methods_is_reported_at_once():
    config = tiny_config(methods=[{"id": "standard", "objective": "standard"},
                                  {"id": "augmix", "objective": "augmix", "params": {"width": 0, "depth": 0}},
                                  {"id": "noise", "objective": "gaussian_noise", "params": {"sigma": -0.1}}])
    with pytest.raises(ConfigError) as error:
        validate(config, SCHEMA)
    for key in ("methods[1].params.width", "methods[1].params.depth", "methods[2].params.sigma"):
        assert f"repeatability_study.{key}'" in str(error.value)
    assert "is not -1 (1..3 at random per chain) or a depth >= 1" in str(error.value)


# Parameters each objective needs besides the one under test.
REQUIRED_PARAMS = {"stability": {"alpha": 1.0, "sigma": 0.1}, "patch_gaussian": {"max_width": 8, "max_sigma": 0.5},
                   "gaussian_noise": {"sigma": 0.1}}


def _bounds(prop: dict) -> list[tuple[object, bool]]:
    """(value, valid) pairs at the edges of a parameter's schema range."""
    step = 1 if prop.get("type") == "integer" else 0.01
    cases = []
    if "minimum" in prop:
        cases += [(prop["minimum"], True), (prop["minimum"] - step, False)]
    if "exclusiveMinimum" in prop:
        cases += [(prop["exclusiveMinimum"] + step, True), (prop["exclusiveMinimum"], False)]
    if "maximum" in prop:
        cases += [(prop["maximum"], True), (prop["maximum"] + step, False)]
    if "anyOf" in prop:  # AugMix depth: -1 or >= 1
        cases += [(-1, True), (1, True), (0, False), (-2, False)]
    if "items" in prop:  # AugMix ops
        cases += [([prop["items"]["enum"][0]], True), (["color"], False), ([], False)]
    return cases


def _parameter_schemas():
    """(objective, parameter, its schema) for every parameter the methods' schema bounds."""
    methods = SCHEMA["properties"][plan.SECTION]["properties"]["methods"]["items"]
    for rule in methods["allOf"]:
        objective = rule["if"]["properties"]["objective"]["const"]
        for name, prop in rule["then"]["properties"]["params"]["properties"].items():
            yield objective, name, prop


def _schema_bounds():
    for objective, name, prop in _parameter_schemas():
        for value, valid in _bounds(prop):
            yield objective, name, value, valid


@pytest.mark.parametrize("objective, name, value, valid", list(_schema_bounds()))
def test_the_schema_bounds_each_parameter_as_its_objective_does(objective, name, value, valid):
    """Config validation stops a value before any job exactly when the objective would refuse it
    in the training job."""
    from robustflow.objectives import build_objective

    params = {**REQUIRED_PARAMS.get(objective, {}), name: value}
    config = tiny_config(methods=[{"id": "standard", "objective": "standard"},
                                  {"id": "fix", "objective": objective, "params": params}])
    if valid:
        validate(config, SCHEMA)
        build_objective(objective, **params)
    else:
        with pytest.raises(ConfigError, match=rf"methods\[1\]\.params\.{name}"):
            validate(config, SCHEMA)
        with pytest.raises(ValueError):
            build_objective(objective, **params)


@pytest.mark.parametrize("objective, name, prop", list(_parameter_schemas()))
def test_the_schema_refuses_integer_valued_floats_and_nan(objective, name, prop):
    """JSON Schema's own integer takes 4.0 and its number takes NaN (which passes any minimum);
    the objectives take neither (a float width crashes the augmentation, NaN poisons the loss)."""
    bad = {"integer": [3.0], "number": [float("nan")]}.get(prop["type"], [])
    for value in bad:
        config = tiny_config(methods=[{"id": "standard", "objective": "standard"},
                                      {"id": "fix", "objective": objective,
                                       "params": {**REQUIRED_PARAMS.get(objective, {}), name: value}}])
        with pytest.raises(ConfigError, match=rf"methods\[1\]\.params\.{name}'.* is not of type"):
            validate(config, SCHEMA)


def test_every_objective_parameter_has_a_schema_range():
    ranged = {(objective, name) for objective, name, _, _ in _schema_bounds()}
    jsd = {("augmix", "jsd")}  # a boolean: its type is its range
    assert {(o, n) for o, (names, _) in plan.OBJECTIVE_PARAMETERS.items() for n in names} == ranged | jsd


def test_the_plans_scored_perturbations_are_the_generators():
    """The plan keeps its own copy (it must import without torch); it must not drift."""
    from robustflow.perturbations import SCORED_PERTURBATIONS

    assert plan.SCORED_PERTURBATIONS == SCORED_PERTURBATIONS


def test_the_plans_objective_parameters_are_the_objectives():
    from dataclasses import MISSING, fields

    from robustflow.objectives import OBJECTIVE_CLASSES

    table = {name: (tuple(f.name for f in fields(cls)),
                    tuple(f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING))
             for name, cls in OBJECTIVE_CLASSES.items()}
    assert {**table, "standard": ((), ())} == plan.OBJECTIVE_PARAMETERS
