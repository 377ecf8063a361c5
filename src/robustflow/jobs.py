"""How a Snakemake job calls a study step: the one adapter every rule's script goes through.

A step is ``step(config, job, inputs, outputs)`` (see `robustflow.studies`): ``config`` is the
job's ``params.config`` (exactly the part of the config the step reads), ``job`` its
``params.job`` (the run record, or the wildcards of a study-level job), ``inputs`` and
``outputs`` the rule's named files. From Python, pass any objects with the same attributes
(`files` builds one).

With ``ROBUSTFLOW_TRACE_READS=<folder>`` set, every job also writes which keys of its config
it never read to ``<folder>``: the workflow test uses this to show that each job's params are
exactly what it reads, so an edit to a key a job ignores cannot rerun it.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from robustflow.io import log_to, write_json

logger = logging.getLogger(__name__)
TRACE_ENV = "ROBUSTFLOW_TRACE_READS"
Step = Callable[[dict, dict, Any, Any], None]


def files(**paths) -> SimpleNamespace:
    """Named inputs or outputs for calling a step from Python: ``files(model="m.pt")``."""
    return SimpleNamespace(**paths)


def run_step(smk, step: Step) -> None:
    """Run ``step`` for the Snakemake job ``smk``: log to its log file (starting with what it runs),
    claim its GPUs, set its threads, call the step with the job's config, record, then write the
    config trace if asked for."""
    with log_to(smk.log[0], job_header(smk, step)):
        gpus = int(getattr(smk.resources, "gpu", 0) or 0)
        if gpus or "torch" in sys.modules:
            from robustflow.device import (
                claim_gpu_slot,
                configure_threads,
                describe_torch,
            )

            claim_gpu_slot(gpus)  # before anything touches CUDA
            configure_threads(smk.threads)
            logger.info("torch: %s", describe_torch())
        else:
            logger.info("torch: not imported (this step does not use it)")
        config = smk.params.config
        trace_dir = os.environ.get(TRACE_ENV)
        reads: set[tuple] = set()
        if trace_dir:
            config = recording_reads(config, reads)
        step(config, dict(smk.params.get("job") or {}), smk.input, smk.output)
        if trace_dir:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(smk.log[0]))
            write_json({"rule": smk.rule, "log": str(smk.log[0]),
                        "unread": [_key_text(path) for path in unread_keys(smk.params.config, reads)]},
                       Path(trace_dir) / f"{name}.json")


def job_header(smk, step: Step) -> dict[str, str]:
    """What the job ``smk`` runs, for the top of its log: study, rule and step, its job record (the
    wildcards and the run or variant they name) and the config it reads (the plain params, not a
    recording copy, so that echoing them reads no key)."""
    # robustflow.studies.<study>.steps / .summary; a step outside a study (the report's) names its module.
    parts = step.__module__.split(".")
    study = parts[2] if parts[:2] == ["robustflow", "studies"] and len(parts) > 2 else step.__module__
    return {
        "study": study,
        "rule": f"{smk.rule} (step {step.__qualname__})",
        "job": compact_json(dict(smk.params.get("job") or {})),
        "config": compact_json(smk.params.config),
    }


def compact_json(value) -> str:
    """``value`` as one line of JSON with sorted keys (values JSON lacks, such as paths, as text)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class _RecordingDict(dict):
    """A dict that adds the key path of every value read from it to a shared set."""

    def __init__(self, data: Mapping, path: tuple, reads: set) -> None:
        super().__init__(data)
        self._path, self._reads = path, reads

    def __getitem__(self, key):
        self._reads.add((*self._path, key))
        return recording_reads(super().__getitem__(key), self._reads, (*self._path, key))

    def __iter__(self):
        # Defining __iter__ turns off dict's copy fast path, so ``**d`` and ``{**d}`` read
        # through __getitem__ and are recorded.
        return iter(list(dict.keys(self)))

    def get(self, key, default=None):
        return self[key] if key in self else default

    def items(self):
        return [(key, self[key]) for key in self]

    def values(self):
        return [self[key] for key in self]

    def __deepcopy__(self, memo):
        return copy.deepcopy(dict(self), memo)


def recording_reads(value, reads: set, path: tuple = ()):
    """``value`` with every nested dict replaced by one that records reads into ``reads``."""
    if isinstance(value, Mapping):
        return _RecordingDict(value, path, reads)
    if isinstance(value, list):
        return [recording_reads(item, reads, (*path, index)) for index, item in enumerate(value)]
    return value


def leaf_keys(value, path: tuple = ()) -> list[tuple]:
    """Key paths of the leaves of a nested config (an empty dict is a leaf; so is a list of plain values)."""
    if isinstance(value, Mapping) and value:
        return [leaf for key, sub in value.items() for leaf in leaf_keys(sub, (*path, key))]
    if isinstance(value, list) and any(isinstance(item, (Mapping, list)) for item in value):
        return [leaf for index, item in enumerate(value) for leaf in leaf_keys(item, (*path, index))]
    return [path]


def unread_keys(config: Mapping, reads: set) -> list[tuple]:
    """Leaves of ``config`` that were never read (an empty config has none)."""
    return [leaf for leaf in leaf_keys(config) if leaf and leaf not in reads]


def _key_text(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def read_trace(folder: str | Path) -> list[dict]:
    """The traces the jobs of a run wrote into ``folder``."""
    return [json.loads(path.read_text()) for path in sorted(Path(folder).glob("*.json"))]
