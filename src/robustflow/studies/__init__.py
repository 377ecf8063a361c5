"""The study contract: every study is a package of the same three modules.

Words (the same in every study, its tables and its run ids):

- *variant*: one grid point of the study's sweep (``margin-lam10``, ``cnn-pt``, ``hebbian-0-0.5``);
- *seed*: the repetition of a variant (it fixes data order, init and noise);
- *run*: one variant at one seed (``margin-lam10-s2``), one training job;
- *source*: a source document (``source 000``) whose claims the study tests.

``robustflow.studies.<name>.plan`` (imports no torch, pandas or matplotlib: the DAG is built
from it, and every cluster job rebuilds the DAG):

- ``SECTION``: the study's config section, e.g. ``"loss_study"``; ``FIGURES``: figure names;
- ``variants(config)`` and ``runs(config)``: the grid points and the run table (lists of plain
  dicts; every run has ``run``, ``variant`` and ``seed``);
- ``job_config(config, step, job)``: exactly the part of the config the job of ``step`` for
  ``job`` reads (its run record, or its wildcards), and nothing else, so an edit to any other
  key leaves the job's params, and so its outputs, untouched (seeds are in no job config, but
  for the learning-rule cells, which train all seeds of a cell in one cheap job);
- ``targets(config)``: the study's final files; ``check(config)``: the problems of the study's
  section that the schema cannot express (a list of messages naming keys).

``robustflow.studies.<name>.steps`` and ``.summary``: one function per rule,
``step(config, job, inputs, outputs)`` with ``config`` from ``job_config``, ``job`` the run
record or wildcards (a step whose job is a run names it ``run``), ``inputs`` and ``outputs`` the
rule's named files (see `robustflow.jobs`). ``steps`` holds the jobs that run models (torch);
``summary`` the aggregate and figure jobs, which read tables and import no torch, so they start
in a fraction of a torch job's start-up.

``robustflow.studies.<name>.claims``: the claims of the sources, each defined once with its
measurement, and ``claims_table(<the study's aggregated tables>, config)`` that judges them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from robustflow.config import ConfigError, load_schema, validate_config

STUDIES = ("loss_study", "learning_rule_study", "architecture_study", "background_study", "repeatability_study")
_PACKAGES = {section: section.removesuffix("_study") for section in STUDIES}


def run_id(variant: str, seed: int) -> str:
    """The id of a variant's run at ``seed``, the same in every study: ``<variant>-s<seed>``."""
    return f"{variant}-s{seed}"


def plan(section: str) -> ModuleType:
    """The plan module of the study whose config section is ``section``."""
    if section not in _PACKAGES:
        raise KeyError(f"unknown study {section!r}; studies: {', '.join(STUDIES)}")
    return importlib.import_module(f"robustflow.studies.{_PACKAGES[section]}.plan")


def enabled(config: dict) -> list[str]:
    """The sections of the studies that ``config`` switches on, in pipeline order."""
    return [section for section in STUDIES if config[section]["enabled"]]


def validate(config: dict, schema: dict | str | Path) -> dict:
    """The config with defaults filled, after the schema and every enabled study's checks.

    All problems are reported at once in one `ConfigError`: a user fixes a config in one pass.
    """
    schema = load_schema(schema) if isinstance(schema, (str, Path)) else schema
    config = validate_config(config, schema)
    problems = [problem for section in enabled(config) for problem in plan(section).check(config)]
    if problems:
        raise ConfigError("\n".join(problems))
    return config
