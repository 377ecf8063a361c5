# Plumbing shared by every study: validation, the study contract's plans, job params and targets.
# It knows no study's internals: each study's rules file asks its plan (robustflow.studies).
from robustflow.claims_html import STUDY_TITLES, claims_page_path
from robustflow.config import ConfigError
from robustflow.studies import STUDIES, enabled, plan, validate


def nested_command_line_hint():
    """Snakemake 9 parses a value nested in a --config entry (key={a: b}) with YAML's BaseLoader,
    so every nested scalar arrives as a string ({enabled: false} as 'false') and fails the schema.
    """
    nested = [
        key
        for key, value in workflow.config_settings.config.items()
        if isinstance(value, (dict, list))
    ]
    if not nested:
        return ""
    return (
        f"\nnote: Snakemake reads every value nested in --config {', '.join(nested)}=... as a "
        "string ('false', '10'); set nested keys in a config file instead, e.g. "
        "--configfile config/paper.yaml config/paper/only_loss.yaml runs one study of "
        "config/paper.yaml"
    )


# Validate (and fill defaults) before the DAG is built: a bad config never starts a job.
try:
    config = validate(config, workflow.source_path("../config/schema.yaml"))
except ConfigError as error:
    raise WorkflowError(
        f"invalid configuration:\n{error}{nested_command_line_hint()}"
    ) from None

ENABLED = enabled(config)
PLANS = {section: plan(section) for section in STUDIES}
RUNS = {
    section: (
        {run["run"]: run for run in PLANS[section].runs(config)}
        if section in ENABLED
        else {}
    )
    for section in STUDIES
}
VARIANTS = {
    section: (
        {variant["variant"]: variant for variant in PLANS[section].variants(config)}
        if section in ENABLED
        else {}
    )
    for section in STUDIES
}


wildcard_constraints:
    run="[A-Za-z0-9_.\-]+",
    variant="[A-Za-z0-9_.\-]+",
    figure="[a-z_]+",
    model="[a-z0-9_]+",
    seed="[0-9]+",
    group="[a-z_]+",


def study_resources(section):
    return config[section]["resources"]


def job_record(section, wildcards):
    """The job a rule's wildcards stand for: the record of its run or variant (plus the other
    wildcards), or the wildcards."""
    job = dict(wildcards.items())
    if "run" in job:
        return {**job, **RUNS[section][job["run"]]}
    if "variant" in job:
        return {**job, **VARIANTS[section][job["variant"]]}
    return job


def step_config(section, step):
    """The ``config`` param of a job of ``step``: exactly the part of the config the step reads."""
    return lambda wildcards: PLANS[section].job_config(
        config, step, job_record(section, wildcards)
    )


def job_of(section):
    """The ``job`` param: the job's run record or wildcards."""
    return lambda wildcards: job_record(section, wildcards)


def study_targets(section):
    """The study's final files and the report's page of its claims (rules/report.smk)."""
    if section not in ENABLED:
        return []
    return [*PLANS[section].targets(config), claims_page_path(section)]


def all_targets():
    return [target for section in STUDIES for target in study_targets(section)]
