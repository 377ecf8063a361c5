from robustflow.config import (
    ConfigError,
    learning_rule_cells,
    learning_rule_job_config,
    load_schema,
    loss_job_config,
    loss_study_runs,
    run_record,
    validate_config,
)
from robustflow.plots.learning_rule import FIGURES as LR_FIGURES
from robustflow.plots.loss import FIGURES as LOSS_FIGURES
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


wildcard_constraints:
    run="[A-Za-z0-9_.\-]+",
    figure="[a-z_]+",
    method="[a-z_]+",
    constraint="none|[0-9.e+\-]+",


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


def all_targets():
    targets = []
    if config["loss_study"]["enabled"]:
        targets += loss_study_targets()
    if config["learning_rule_study"]["enabled"]:
        targets += learning_rule_targets()
    return targets
