"""The study contract (`robustflow.studies`): every study has the same plan and steps, the plans
import nothing heavy, and every key of the config reaches some job (or the run table).

The "every key is honoured" test walks each leaf of the validated default config, changes it to
another valid value (the change must pass `robustflow.studies.validate`) and checks that some
job's params (``plan.job_config`` of every job the rules would create) or the plan's runs
change: a key that validates but reaches no job is a setting a user changes to no effect. Keys
that act only under another setting (``bg_challenge.*`` needs ``source: bg_challenge``) are
tried in configs with that setting too. Grid keys must change the runs, variants, targets or
the set of jobs; ``resources.*`` must change none of them.
"""

from __future__ import annotations

import ast
import copy
import importlib
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from robustflow.config import ConfigError, load_schema
from robustflow.corruption_names import CORRUPTIONS
from robustflow.model_catalog import MODEL_NAMES
from robustflow.studies import STUDIES, plan, validate
from tests.fixtures import (
    write_bg_challenge_fixture,
    write_cifar10_fixture,
    write_cifar10p_fixture,
    write_image_folder_fixture,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "config" / "schema.yaml")
PREFIX = {section: section.removesuffix("_study") for section in STUDIES}  # of scripts, figures, packages


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


# ----------------------------------------------------------------------------- plans and steps


@pytest.mark.parametrize("section", STUDIES)
def test_plan_exposes_the_contract_and_runs_name_run_variant_seed(section):
    study = plan(section)
    assert study.SECTION == section
    assert isinstance(study.FIGURES, tuple) and study.FIGURES
    for name in ("variants", "runs", "job_config", "targets", "check"):
        assert callable(getattr(study, name, None)), f"{study.__name__} lacks {name}"
    config = validate(default_config(), SCHEMA)
    runs = study.runs(config)
    assert runs, section
    for run in runs:
        assert {"run", "variant", "seed"} <= set(run), run
        assert type(run["seed"]) is int and run["run"] == f"{run['variant']}-s{run['seed']}"
    assert len({run["run"] for run in runs}) == len(runs)
    assert {run["variant"] for run in runs} == {variant["variant"] for variant in study.variants(config)}
    assert study.check(config) == []
    json.dumps(runs)  # plain values: they travel as job params


def _rule_scripts(section: str) -> dict[str, str]:
    """rule name -> script file name, from the study's rules file."""
    text = (REPO / "rules" / f"{section}.smk").read_text()
    rule = r"^rule (\w+):(?:(?!^rule ).)*?script:\s*\"\.\./scripts/([\w.]+)\""
    return dict(re.findall(rule, text, re.MULTILINE | re.DOTALL))


@pytest.mark.parametrize("section", STUDIES)
def test_each_rule_script_calls_one_step_of_its_study(section):
    prefix = PREFIX[section]
    scripts = sorted(path.name for path in (REPO / "scripts").glob(f"{prefix}_*.py"))
    assert scripts, section
    rules = _rule_scripts(section)
    assert sorted(rules.values()) == scripts, "every script is the script of one rule of the study"
    assert all(rule == script.removesuffix(".py") for rule, script in rules.items())
    for script in scripts:
        step = script.removesuffix(".py").removeprefix(f"{prefix}_")
        module_name = _step_module(section, step)
        tree = ast.parse((REPO / "scripts" / script).read_text())
        imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                   and node.module.startswith("robustflow.studies")]
        assert len(imports) == 1 and imports[0].module == module_name, f"{script}: {ast.dump(tree)}"
        assert [alias.name for alias in imports[0].names] == [step], script
        function = getattr(importlib.import_module(module_name), step, None)
        assert callable(function), f"{module_name} has no step {step!r} (imported by scripts/{script})"
        # run_step calls it as step(config, job, inputs, outputs), positionally.
        parameters = list(inspect.signature(function).parameters.values())
        assert len(parameters) == 4 and all(p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
                                            for p in parameters), f"{module_name}.{step}"
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and getattr(node.func, "id", None) == "run_step"]
        assert len(calls) == 1 and [getattr(arg, "id", None) for arg in calls[0].args] == ["snakemake", step]


# Steps that only read tables and draw figures live in ``summary`` (no torch); the rest in ``steps``.
SUMMARY_STEPS = {"aggregate", "figure", "saliency_grid", "influence_grid"}


def _step_module(section: str, step: str) -> str:
    return f"robustflow.studies.{PREFIX[section]}.{'summary' if step in SUMMARY_STEPS else 'steps'}"


def _steps_of(section: str) -> list[tuple[str, str]]:
    prefix = PREFIX[section]
    return [(section, path.stem.removeprefix(f"{prefix}_"))
            for path in sorted((REPO / "scripts").glob(f"{prefix}_*.py"))]


# Steps whose job is a run call it ``run``; the rest ``job`` (see robustflow.studies).
PER_RUN_STEPS = {("loss_study", "train"), ("loss_study", "evaluate"), ("architecture_study", "train"),
                 ("architecture_study", "evaluate"), ("architecture_study", "finetune"),
                 ("background_study", "train"), ("background_study", "evaluate"),
                 ("background_study", "influence"), ("repeatability_study", "train"),
                 ("repeatability_study", "evaluate")}


@pytest.mark.parametrize("section, step", [(section, step) for study in STUDIES for section, step in _steps_of(study)])
def test_every_step_has_the_contract_parameter_names(section, step):
    module = importlib.import_module(_step_module(section, step))
    expected = ["config", "run" if (section, step) in PER_RUN_STEPS else "job", "inputs", "outputs"]
    assert list(inspect.signature(getattr(module, step)).parameters) == expected


def test_table_and_figure_jobs_import_no_torch():
    """What an aggregate or figure job imports (the adapter's modules, the plots it draws with)
    leaves torch out: those jobs start without paying for it."""
    modules = ["robustflow.jobs", *(f"robustflow.studies.{PREFIX[section]}.summary" for section in STUDIES),
               *(f"robustflow.plots.{PREFIX[section]}" for section in STUDIES)]
    code = f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\n" \
           "print(sorted(name for name in ('torch', 'timm', 'torchvision') if name in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("extra", [[], ["paper.yaml"]])
def test_plans_and_validation_import_nothing_heavy(extra):
    """Also for config/paper.yaml, whose pretrained timm models are looked up in the offline
    cache (its missing datasets make validation fail, after every check has run)."""
    files = [str(REPO / "config" / name) for name in ["config.yaml", *extra]]
    code = f"""
import sys, yaml
import robustflow.studies as studies
from robustflow.config import ConfigError
for section in studies.STUDIES:
    studies.plan(section)
config = {{}}
for path in {files!r}:
    config.update(yaml.safe_load(open(path)))
try:
    config = studies.validate(config, {str(REPO / "config" / "schema.yaml")!r})
    for section in studies.enabled(config):
        studies.plan(section).runs(config), studies.plan(section).targets(config)
except ConfigError:
    pass
print(sorted(name for name in ("torch", "timm", "matplotlib", "seaborn", "pandas") if name in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


# ----------------------------------------------------------------------------- the jobs of a config


def study_jobs(section: str, config: dict) -> list[tuple[str, dict]]:
    """(step, job record) of every job the study's rules create for ``config``: the record is
    what ``job_record`` in rules/common.smk builds, a run's record plus the rule's other
    wildcards, a variant's record, or the wildcards alone."""
    study = plan(section)
    runs = study.runs(config)
    figures = [("figure", {"figure": figure}) for figure in study.FIGURES]
    if section == "loss_study":
        return [*((step, run) for run in runs for step in ("train", "evaluate")), ("aggregate", {}), *figures]
    if section == "learning_rule_study":
        return [*(("cell", variant) for variant in study.variants(config)), ("aggregate", {}), *figures]
    if section == "architecture_study":
        pretrain = {(run["model"], run["seed"]) for run in runs if study.source_task_weights(config, run)}
        return [("prepare_cifar10c", {}),
                *(("pretrain", {"model": model, "seed": str(seed)}) for model, seed in sorted(pretrain)),
                *((step, run) for run in runs for step in ("train", "evaluate")),
                *(("finetune", {"group": group, **run}) for run in runs for group in study.finetune_groups(config)),
                ("aggregate", {}), *figures]
    if section == "background_study":
        models = [spec["id"] for spec in config[section]["models"]]
        return [("generate_set", {}), *((step, run) for run in runs for step in ("train", "evaluate")),
                *(("influence", run) for run in study.influence_runs(config)), ("aggregate", {}), *figures,
                *((grid, {"model": model}) for grid in study.GRIDS for model in models)]
    if section == "repeatability_study":
        return [("prepare_sequences", {}), ("prepare_cifar10c", {}),
                *((step, run) for run in runs for step in ("train", "evaluate")), ("aggregate", {}), *figures]
    raise KeyError(section)


@pytest.mark.parametrize("section", STUDIES)
def test_job_enumeration_covers_every_step_of_the_rules(section):
    text = (REPO / "rules" / f"{section}.smk").read_text()
    steps = set(re.findall(r"step_config\(\w+, \"(\w+)\"\)", text))
    config = validate(default_config(), SCHEMA)
    assert {step for step, _ in study_jobs(section, config)} == steps
    assert set(_rule_scripts(section)) == {f"{PREFIX[section]}_{step}" for step in steps}
    with pytest.raises(KeyError):
        plan(section).job_config(config, "no_such_step", {})


def snapshot(section: str, config: dict) -> dict:
    """What the plan makes of ``config``: its runs, variants, targets and every job's params."""
    study = plan(section)
    jobs = {(step, json.dumps(job, sort_keys=True)): study.job_config(config, step, job)
            for step, job in study_jobs(section, config)}
    return {"runs": study.runs(config), "variants": study.variants(config), "targets": study.targets(config),
            "job_set": sorted(jobs), "jobs": jobs}


# ----------------------------------------------------------------------------- every key is honoured

# Keys that define the grid: changing them must change the plan's runs, variants, targets or the
# set of jobs (the last for influence.seeds: which runs get TracIn).
GRID_KEYS = {
    "loss_study": {("seeds",), ("sweep",)},
    "learning_rule_study": {("methods",), ("constraints",), ("seeds",)},
    "architecture_study": {("seeds",), ("models", "*", "id")},
    "background_study": {("seeds",), ("methods",), ("reg_coeffs",), ("models", "*", "id"), ("influence", "seeds")},
    "repeatability_study": {("seeds",), ("models", "*", "id"), ("methods", "*", "id")},
}
# An objective's empty parameter block has no other value for the walk to try (each objective
# takes only its own parameters, tests/test_repeatability_study.py); filled ones are walked.
SKIPPED = {("enabled",), ("methods", "*", "params")}
SHARED_KEYS = ("device", "datasets", "noise_suite")


def _pattern(path: tuple) -> tuple:
    return tuple("*" if isinstance(part, int) else part for part in path)


def _leaves(value, path: tuple, stop: set) -> list[tuple]:
    """Leaf key paths under ``path``; lists of plain values and the ``stop`` patterns are leaves."""
    if _pattern(path) in stop:
        return [path]
    if isinstance(value, dict) and value:
        return [leaf for key, sub in value.items() for leaf in _leaves(sub, (*path, key), stop)]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [leaf for index, item in enumerate(value) for leaf in _leaves(item, (*path, index), stop)]
    return [path]


def _get(config: dict, path: tuple):
    node = config
    for part in path:
        node = node[part]
    return node


def _with(config: dict, path: tuple, value) -> dict:
    changed = copy.deepcopy(config)
    _get(changed, path[:-1])[path[-1]] = value
    return changed


def _schema_at(path: tuple) -> dict:
    """The schema of the key at ``path`` ({} below free-form objects such as kwargs)."""
    node = SCHEMA
    for part in path:
        while "$ref" in node:
            target = SCHEMA
            for name in node["$ref"].removeprefix("#/").split("/"):
                target = target[name]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        node = node.get("items", {}) if isinstance(part, int) else node.get("properties", {}).get(part, {})
    return node


def _candidates(path: tuple, value, extras: dict) -> list:
    """Other values for the key at ``path``, most of them valid; validation keeps the valid ones."""
    schema = _schema_at(path)
    key = path[-1]
    if isinstance(value, bool):
        return [not value]
    if "enum" in schema:
        return [choice for choice in schema["enum"] if choice != value]
    if isinstance(value, int):
        return [value + 1, value - 1, value * 2, value + 2]  # + 2: blur filters skip size 1
    if isinstance(value, float):
        return [value * 0.5, value * 2, value + 0.05, value - 0.05] if value else [0.1, 1.0]
    if isinstance(value, str):
        named = [name for name in MODEL_NAMES if name != value] if key == "name" else []
        return [*named, *extras.get(key, []), f"{value}_other"]
    if value is None:
        types = schema.get("type", [])
        return [*([*extras.get(key, []), "x"] if "string" in types else []),
                *([16, 32] if "integer" in types else []),
                *([list(CORRUPTIONS[:-1]), ["fog"]] if "array" in types else [])]
    if isinstance(value, list):
        items = _schema_at((*path, 0)).get("enum", [])
        options = [value[:-1]] if len(value) > 1 else []
        options += [[*value[:-1], choice] for choice in items if choice not in value]
        if value and isinstance(value[0], (int, float)) and not isinstance(value[0], bool):
            options.append([value[0] + 2, *value[1:]])
        if value and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in value):
            options.append([*value, max(value) + 1])
        if value and all(isinstance(item, list) for item in value):  # weight ranges
            options.append(value[:-1] + [[0, 3]])
        return options
    if isinstance(value, dict):
        return [{**value, "added_by_test": 1}]
    raise TypeError(f"no alternative for {path}: {value!r}")


def _changed(config: dict, path: tuple, extras: dict) -> dict | None:
    """A valid config that differs from ``config`` at ``path`` (an id renamed with its baseline), or None."""
    value = _get(config, path)
    if path[-1] == "id":
        renamed = _with(config, path, f"{value}x")
        section = renamed[path[0]]
        if "baseline" in section and value in section["baseline"].split("-"):
            section["baseline"] = "-".join(f"{part}x" if part == value else part
                                           for part in section["baseline"].split("-"))
        candidates = [renamed]
    elif path[-1] in ("pretrained", "pretrained_source"):
        # Switching pretrained weights off drops the file with them (a file without them is an error).
        entry = path[:-1]
        candidates = []
        for candidate in _candidates(path, value, extras):
            changed = _with(config, path, candidate)
            if candidate in (False, "source_task"):
                changed = _with(changed, (*entry, "pretrained_file"), None)
            candidates.append(changed)
    elif path[:2] == ("repeatability_study", "methods") and path[-1] == "objective":
        # Another objective takes other parameters: switch to one whose parameters all have defaults.
        candidates = [_with(_with(config, path, name), (*path[:-1], "params"), {})
                      for name in ("standard", "augmix", "rotation_head") if name != value]
    elif path == ("background_study", "influence", "seeds"):
        candidates = [_with(config, path, sorted(set(config["background_study"]["seeds"]) - set(value))[:1])]
    elif path == ("loss_study", "baseline"):
        names = [variant["variant"] for variant in plan("loss_study").variants(config)]
        candidates = [_with(config, path, name) for name in names if name != value]
    elif path == ("repeatability_study", "baseline"):
        names = [variant["variant"] for variant in plan("repeatability_study").variants(config)]
        candidates = [_with(config, path, name) for name in names if name != value]
    elif path == ("architecture_study", "baseline"):
        names = [variant["variant"] for variant in plan("architecture_study").variants(config)]
        candidates = [_with(config, path, name) for name in names if name != value]
    elif path == ("loss_study", "sweep"):
        candidates = [_with(config, path, value[:-1])]
    else:
        candidates = [_with(config, path, candidate) for candidate in _candidates(path, value, extras)]
    for candidate in candidates:
        if _get(candidate, path) == value:
            continue
        try:
            return validate(candidate, SCHEMA)
        except ConfigError:
            continue
    return None


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    """Configs in which keys that act only under some setting act: each is the default plus
    that setting (with the files it needs on disk), and ``extras``: other valid paths."""
    root = tmp_path_factory.mktemp("contexts")
    for name in ("weights.pt", "weights2.pt"):
        (root / name).write_bytes(b"not read: only its presence is checked")
    write_bg_challenge_fixture(root / "bg1")
    write_bg_challenge_fixture(root / "bg2")
    write_image_folder_fixture(root / "images1")
    write_image_folder_fixture(root / "images2")
    write_cifar10_fixture(root / "cifar1")
    write_cifar10_fixture(root / "cifar2")
    scored = plan("repeatability_study").SCORED_PERTURBATIONS
    write_cifar10p_fixture(root / "cifar10p1", scored)
    write_cifar10p_fixture(root / "cifar10p2", scored)
    extras = {"root": [str(root / name) for name in ("bg2", "images2", "cifar2", "cifar10p2")],
              "pretrained_file": [str(root / "weights2.pt")]}

    base = default_config()
    weights = copy.deepcopy(base)
    weights["loss_study"]["model"].update(pretrained=True, pretrained_file=str(root / "weights.pt"))
    for spec in weights["background_study"]["models"]:
        spec.update(pretrained=True, pretrained_file=str(root / "weights.pt"))
    for spec in weights["repeatability_study"]["models"]:
        spec.update(pretrained=True, pretrained_file=str(root / "weights.pt"))
    for spec in weights["architecture_study"]["models"]:
        spec.update(pretrained_source="timm", pretrained_file=str(root / "weights.pt"))
    challenge = copy.deepcopy(base)
    challenge["background_study"].update(source="bg_challenge", bg_challenge={"root": str(root / "bg1")})
    folder = copy.deepcopy(base)
    folder["learning_rule_study"]["task"].update(source="folder", root=str(root / "images1"))
    cifar10 = copy.deepcopy(base)
    cifar10["loss_study"]["dataset"] = cifar10["architecture_study"]["dataset"] = "cifar10"
    cifar10["datasets"]["cifar10"] = {"root": str(root / "cifar1")}
    cifar10["repeatability_study"]["dataset"] = "cifar10"
    official = copy.deepcopy(cifar10)
    official["repeatability_study"]["perturbations"]["root"] = str(root / "cifar10p1")
    configs = {name: validate(config, SCHEMA) for name, config in
               (("default", base), ("pretrained weights", weights), ("bg_challenge", challenge),
                ("image folder", folder), ("cifar10", cifar10), ("official CIFAR-10-P", official))}
    return configs, extras


def _reach(sections, path, contexts, extras, *, grid: bool):
    """Whether changing the key at ``path`` changes the plans of ``sections`` in some context;
    None when no context admits another valid value."""
    mutated_somewhere = False
    for config in contexts.values():
        if not _has(config, path):
            continue
        changed = _changed(config, path, extras)
        if changed is None:
            continue
        mutated_somewhere = True
        for section in sections:
            before, after = snapshot(section, config), snapshot(section, changed)
            fields = ("runs", "variants", "targets", "job_set") if grid else ("runs", "jobs")
            if any(before[field] != after[field] for field in fields):
                return True
    return False if mutated_somewhere else None


def _has(config: dict, path: tuple) -> bool:
    try:
        _get(config, path)
    except (KeyError, IndexError, TypeError):
        return False
    return True


def test_every_config_key_reaches_a_job_or_the_run_table(contexts):
    configs, extras = contexts
    default = configs["default"]
    keys = []  # (sections whose plans it may reach, key path, is a grid key)
    for section in STUDIES:
        grid = GRID_KEYS[section]
        stop = grid | {("resources",)}
        for path in _leaves(default[section], (section,), {(section, *p) for p in stop}):
            relative = _pattern(path)[1:]
            if relative in SKIPPED or relative[:1] == ("resources",):
                continue
            keys.append(((section,), path, relative in grid))
    for top in SHARED_KEYS:
        for path in _leaves(default[top], (top,), set()) if isinstance(default[top], dict) else [(top,)]:
            keys.append((STUDIES, path, False))
    # Keys that exist only in a context (datasets.cifar10.* is filled in by default, so it is walked).
    assert ("datasets", "cifar10", "root") in [path for _, path, _ in keys]

    unreached, unmutable = [], []
    for sections, path, grid in keys:
        reached = _reach(sections, path, configs, extras, grid=grid)
        if reached is None:
            unmutable.append(path)
        elif not reached:
            unreached.append(("grid key: " if grid else "") + ".".join(map(str, path)))
    print("keys that reach no job and no run:", unreached)
    print("keys with no other valid value found:", unmutable)
    assert not unmutable, f"the test found no other valid value for {unmutable}"
    assert not unreached, f"config keys that change no job config and no run: {unreached}"


def test_resources_change_no_job_config(contexts):
    configs, extras = contexts
    config = configs["default"]
    for section in STUDIES:
        for key in config[section]["resources"]:
            path = (section, "resources", key)
            changed = _changed(config, path, extras)
            assert changed is not None, path
            for study in STUDIES:
                before, after = snapshot(study, config), snapshot(study, changed)
                assert before == after, f"{'.'.join(path)} changed a job config or the run table of {study}"

