import os

from robustflow.config import (
    ConfigError,
    architecture_job_config,
    background_job_config,
    learning_rule_cells,
    learning_rule_job_config,
    load_schema,
    loss_job_config,
    loss_study_runs,
    run_record,
    validate_config,
)
from robustflow.plots.architecture import FIGURES as ARCH_FIGURES
from robustflow.plots.background import FIGURES as BG_FIGURES
from robustflow.plots.learning_rule import FIGURES as LR_FIGURES
from robustflow.plots.loss import FIGURES as LOSS_FIGURES
from robustflow.studies.architecture_study import (
    architecture_runs,
    finetune_groups,
    model_spec,
)
from robustflow.studies.background_study import model_specs as background_model_specs
from robustflow.studies.background_study import study_runs as background_study_runs
from robustflow.studies.learning_rule_study import cell_id, parse_constraint_id

# Validate (and fill defaults) before the DAG is built: a bad config never starts a job.
try:
    config = validate_config(
        config, load_schema(workflow.source_path("../config/schema.yaml"))
    )
except ConfigError as error:
    raise WorkflowError(f"invalid configuration:\n{error}") from None

LOSS_RUNS = loss_study_runs(config)
LOSS_RUN_IDS = list(LOSS_RUNS.index) if config["loss_study"]["enabled"] else []
LR_CELLS = (
    learning_rule_cells(config)
    if config["learning_rule_study"]["enabled"]
    else {"method": [], "constraint": []}
)

ARCH_RUNS = architecture_runs(config)
ARCH_ENABLED = config["architecture_study"]["enabled"]
ARCH_RUN_IDS = list(ARCH_RUNS.index) if ARCH_ENABLED else []
ARCH_GROUPS = list(finetune_groups(config)) if ARCH_ENABLED else []

BG_STUDY = config["background_study"]
BG_ENABLED = BG_STUDY["enabled"]
BG_MODELS = background_model_specs(config)
BG_RUNS = (
    {run["run"]: run for run in background_study_runs(config)} if BG_ENABLED else {}
)
BG_INFLUENCE_RUNS = [
    run_id
    for run_id, run in BG_RUNS.items()
    if run["seed"] in BG_STUDY["influence"]["seeds"]
]


wildcard_constraints:
    run="[A-Za-z0-9_.\-]+",
    figure="[a-z_]+",
    method="[a-z_]+",
    constraint="none|[0-9.e+\-]+",
    model="[a-z0-9_]+",
    seed="[0-9]+",
    group="[a-z_]+",


def study_resources(study):
    return config[study]["resources"]


def loss_study_targets():
    return expand(
        "results/figures/loss_{figure}.{ext}", figure=LOSS_FIGURES, ext=["pdf", "png"]
    ) + [
        "results/tables/loss_summary.csv",
        "results/tables/loss_claims.csv",
    ]


def learning_rule_targets():
    return expand(
        "results/figures/learning_rule_{figure}.{ext}",
        figure=LR_FIGURES,
        ext=["pdf", "png"],
    ) + [
        "results/tables/learning_rule_summary.csv",
        "results/tables/learning_rule_claims.md",
    ]


def architecture_targets():
    return expand(
        "results/figures/architecture_{figure}.{ext}",
        figure=ARCH_FIGURES,
        ext=["pdf", "png"],
    ) + [
        "results/tables/architecture_summary.csv",
        "results/tables/architecture_claims.csv",
    ]


def background_targets():
    return (
        expand(
            "results/figures/background_{figure}.{ext}",
            figure=BG_FIGURES,
            ext=["pdf", "png"],
        )
        + expand(
            "results/figures/background_{grid}_{model}.{ext}",
            grid=["saliency_grid", "influence_grid"],
            model=BG_MODELS,
            ext=["pdf", "png"],
        )
        + [
            "results/tables/background_summary.csv",
            "results/tables/background_gap_summary.csv",
            "results/tables/background_claims.csv",
        ]
    )


def background_model_spec(run_id):
    return BG_MODELS[BG_RUNS[run_id]["model"]]


def background_saliency_runs(model):
    """Every training method of ``model`` at the first seed, side by side in one grid."""
    first_seed = BG_STUDY["seeds"][0]
    return [
        run_id
        for run_id, run in BG_RUNS.items()
        if run["model"] == model and run["seed"] == first_seed
    ]


def background_influence_run(model):
    """The run whose TracIn proponents are drawn: standard training if swept (it is the one
    expected to lean on backgrounds), else the first method."""
    seed = BG_STUDY["influence"]["seeds"][0]
    runs = [
        run_id
        for run_id in BG_INFLUENCE_RUNS
        if BG_RUNS[run_id]["model"] == model and BG_RUNS[run_id]["seed"] == seed
    ]
    standard = [run_id for run_id in runs if BG_RUNS[run_id]["method"] == "standard"]
    return (standard or runs)[:1]


def architecture_pretrained_input(wildcards):
    """Pretrained arms whose weights come from the pipeline's own source-task pretraining."""
    run = ARCH_RUNS.loc[wildcards.run]
    spec = model_spec(config, run["model"])
    if run["init"] == "pretrained" and spec["pretrained_source"] == "source_task":
        return f"results/architecture_study/pretrain/{run['model']}-s{run['seed']}.pt"
    return []


def all_targets():
    targets = []
    if config["loss_study"]["enabled"]:
        targets += loss_study_targets()
    if config["learning_rule_study"]["enabled"]:
        targets += learning_rule_targets()
    if ARCH_ENABLED:
        targets += architecture_targets()
    if BG_ENABLED:
        targets += background_targets()
    return targets
