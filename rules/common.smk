from robustflow.config import (
    ConfigError,
    load_schema,
    loss_job_config,
    loss_study_runs,
    run_record,
    validate_config,
)

# Validate (and fill defaults) before the DAG is built: a bad config never starts a job.
try:
    config = validate_config(config, load_schema(workflow.source_path("../config/schema.yaml")))
except ConfigError as error:
    raise WorkflowError(f"invalid configuration:\n{error}") from None

LOSS_RUNS = loss_study_runs(config)
LOSS_RUN_IDS = list(LOSS_RUNS.index) if config["loss_study"]["enabled"] else []
LOSS_FIGURES = ["training_curves", "robustness_curves", "lambda_ablation", "confidence"]


wildcard_constraints:
    run="[A-Za-z0-9_.\-]+",
    figure="[a-z_]+",


def study_resources(study):
    return config[study]["resources"]


def loss_study_targets():
    return expand(
        "results/figures/loss_{figure}.{ext}", figure=LOSS_FIGURES, ext=["pdf", "png"]
    ) + [
        "results/tables/loss_summary.csv",
        "results/tables/loss_claims.csv",
    ]


def all_targets():
    targets = []
    if config["loss_study"]["enabled"]:
        targets += loss_study_targets()
    return targets
