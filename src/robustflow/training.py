"""Supervised training of image classifiers on tensor-resident data.

One resumable loop serves every study and every training variant: SGD/AdamW, cosine/step
schedules, an EMA of the weights (evaluated separately), best-epoch selection on validation
top-1, a per-epoch history, an atomic checkpoint every epoch and exact resume from it.

How a batch becomes a loss is the loop's one hook, a `BatchObjective`: `ClassifierObjective`
(crop, flip and mixup, then the configured loss) is the standard one; paired training
(`robustflow.robustar`) plugs in its own. Resume, preemption, EMA, divergence checks, AMP,
data parallelism and checkpoints are the loop's and hold for every objective.

Execution options (`amp`, `channels_last`, `compile`, `devices`) change how a run is
computed, not which run it is: a checkpoint resumes across them. SIGTERM (a scheduler's
preemption notice) ends the current step and raises `TrainingPreempted`; the checkpoint
of the last full epoch stays valid and a rerun resumes from it.

Checkpoints hold tensors and plain values only and are loaded with ``weights_only=True``;
a file that needs more is refused (`CheckpointError`), never unpickled.

Damaged checkpoints do not block a run. Each save first keeps the checkpoint it replaces as
``previous.pt`` (two files in all), and seals the new one with a SHA-256 digest of its bytes. On a
rerun, a checkpoint that cannot be used (its bytes changed since they were written, truncated, not
a zip, missing or inconsistent fields, tensors that do not fit the model) is set aside: renamed to
``<name>.unreadable-<UTC time>`` beside it and kept, with an `UnreadableCheckpointWarning` naming
the new path and the reason. The run then resumes from ``previous.pt``, or starts over, and ends
as an uninterrupted run would. A checkpoint whose intact bytes carry code is not damage: it is
still refused with `CheckpointError`.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import dataclasses
import hashlib
import itertools
import logging
import math
import os
import pickle
import shutil
import signal
import sys
import threading
import time
import warnings
import zipfile
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping, NamedTuple, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from robustflow import distributed
from robustflow.data import ImageSplits
from robustflow.data.augment import (
    iterate_minibatches,
    mixup,
    normalize,
    random_crop,
    random_flip,
    to_unit_float,
)
from robustflow.io import atomic_path, log_records_to
from robustflow.losses import build_loss
from robustflow.metrics import classification_metrics

CHECKPOINT_NAME = "last.pt"
# The checkpoint that `CHECKPOINT_NAME` replaced: the fallback when the newest cannot be read.
PREVIOUS_CHECKPOINT_NAME = "previous.pt"
# Fields that choose how a run is computed, not which run it is (see the module docstring).
EXECUTION_FIELDS = ("amp", "channels_last", "compile", "devices")
# Exit code of a data-parallel worker stopped by SIGTERM (128 + SIGTERM, as a shell reports it).
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM
# History columns of the per-epoch log line besides the train_* ones; the history holds all metrics.
LOGGED_VALIDATION = ("val_top1", "val_loss", "ema_val_top1", "ema_val_loss")

logger = logging.getLogger(__name__)


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingPreempted(RuntimeError):
    """SIGTERM arrived; the checkpoint of the last full epoch is kept, a rerun resumes from it."""


class CheckpointError(ValueError):
    """A checkpoint file could not be loaded safely (``weights_only=True``); the message names the file."""


class UnreadableCheckpointWarning(UserWarning):
    """A damaged checkpoint was set aside (renamed, kept) and the run resumed from an older one or from scratch."""


@dataclass
class TrainSettings:
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adamw"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_size: int = 10
    step_gamma: float = 0.1
    ema_decay: float | None = None
    crop_padding: int = 0
    flip: bool = False
    mixup_alpha: float = 0.0
    loss: str = "ce"
    loss_params: dict = field(default_factory=dict)
    eval_batch_size: int = 512
    seed: int = 0
    amp: bool = False  # bf16 autocast, CUDA only
    channels_last: bool = False  # NHWC memory format, CUDA only
    compile: bool = False  # torch.compile the training forward
    devices: int = 1  # data-parallel processes (GPUs on CUDA); > 1 runs under DDP

    @classmethod
    def from_config(cls, block: Mapping, **overrides) -> "TrainSettings":
        """Settings from a config ``training`` block plus run-specific ``overrides`` (seed, loss...).

        Every key of ``block`` must be a field: a key that validated but has no field here would
        be dropped silently, so it is an error instead.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - names)
        if unknown:
            raise ValueError(f"training keys {unknown} are not training settings; fields: {sorted(names)}")
        return cls(**{**block, **overrides})


@dataclass
class TrainResult:
    history: pd.DataFrame
    best_epoch: int
    best_state: dict
    ema_best_epoch: int | None = None
    ema_best_state: dict | None = None


def build_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=settings.lr,
            momentum=settings.momentum,
            weight_decay=settings.weight_decay,
            nesterov=settings.momentum > 0,
        )
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {settings.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, settings: TrainSettings, steps_per_epoch: int):
    """Per-step schedule so short runs still anneal smoothly."""
    total = settings.epochs * steps_per_epoch
    if settings.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        )
    if settings.schedule == "step":
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: settings.step_gamma ** (step // (settings.step_size * steps_per_epoch)),
        )
    if settings.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"schedule must be cosine, step or constant, got {settings.schedule!r}")


class ModelEma:
    """Exponential moving average of parameters and buffers: ema = d*ema + (1-d)*w."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for param in self.module.parameters():
            param.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for ema_value, value in zip(self.module.state_dict().values(), model.state_dict().values()):
            if ema_value.dtype.is_floating_point:
                ema_value.mul_(self.decay).add_(value.detach(), alpha=1 - self.decay)
            else:
                ema_value.copy_(value)


def autocast_context(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when `amp`; a no-op on CPU, so CPU runs are unchanged."""
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
    amp: bool = False,
) -> torch.Tensor:
    """Logits (float32, CPU) for uint8 images or float images in [0, 1], computed in batches."""
    device = torch.device(device)
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device)
        if batch.dtype == torch.uint8:
            batch = to_unit_float(batch)
        with autocast_context(device, amp):
            outputs.append(model(normalize(batch, mean, std)).float().cpu())
    return torch.cat(outputs)


def augment_batch(
    images: torch.Tensor, labels: torch.Tensor, settings: TrainSettings, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The training view of a uint8 batch: [0, 1] floats, then crop, flip and mixup as `settings` ask.

    Returns ``(images, labels_a, labels_b, lam)``; the loss is ``lam * L(labels_a) + (1 - lam) * L(labels_b)``
    (``labels_b = labels_a`` and ``lam = 1`` without mixup).
    """
    images = crop_and_flip(to_unit_float(images), settings, generator)
    if settings.mixup_alpha > 0:
        return mixup(images, labels, settings.mixup_alpha, generator)
    return images, labels, labels, 1.0


def crop_and_flip(images: torch.Tensor, settings: TrainSettings, generator: torch.Generator) -> torch.Tensor:
    """Random crop and flip as `settings` ask, one draw per image: views stacked on the channel axis
    of an image get the same crop and flip."""
    if settings.crop_padding:
        images = random_crop(images, settings.crop_padding, generator)
    if settings.flip:
        images = random_flip(images, generator)
    return images


def check_execution_settings(settings: TrainSettings, device: torch.device | str, n_train: int) -> None:
    """Raise ValueError when `settings.devices` cannot run on `device` or shard every batch."""
    device = torch.device(device)
    if settings.devices < 1:
        raise ValueError(f"training.devices must be >= 1, got {settings.devices}")
    if settings.devices == 1:
        return
    if device.type == "cuda" and torch.cuda.device_count() < settings.devices:
        raise ValueError(
            f"training.devices is {settings.devices} but this job sees {torch.cuda.device_count()} CUDA "
            "device(s); ask the rule for as many GPUs (resources: gpu) as training.devices"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"training.devices > 1 needs a cpu or cuda device, got {device}")
    last_batch = n_train % settings.batch_size or settings.batch_size
    if min(settings.batch_size, last_batch) < settings.devices:
        raise ValueError(
            f"every batch must hold at least one image per device: training.batch_size {settings.batch_size} "
            f"(last batch {last_batch} of {n_train} images) is split over training.devices {settings.devices}"
        )


def is_better(val: dict, best: dict) -> bool:
    """Model selection: a higher validation top-1 wins; at equal top-1, a lower validation loss.

    Small validation sets tie often, e.g. when a shortcut caps top-1 from the first epoch on while
    the loss keeps falling; on top-1 alone the first of the tied epochs would be kept.
    """
    if val["top1"] != best["top1"]:
        return val["top1"] > best["top1"]
    return val["loss"] < best.get("loss", math.inf)


Forward = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TrainingParts(NamedTuple):
    loss_fn: LossFn
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEma | None
    generator: torch.Generator


def training_parts(model: nn.Module, settings: TrainSettings, n_train: int) -> TrainingParts:
    """What the training loop builds from its settings: the loss, the optimizer with its per-step
    schedule, the EMA (if asked for) and the seeded generator of data order and augmentation."""
    optimizer = build_optimizer(model, settings)
    return TrainingParts(
        loss_fn=build_loss(settings.loss, **settings.loss_params),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, settings, math.ceil(n_train / settings.batch_size)),
        ema=ModelEma(model, settings.ema_decay) if settings.ema_decay else None,
        generator=torch.Generator().manual_seed(settings.seed),
    )


# ----------------------------------------------------------------------------- the objective hook


class TrainBatch(NamedTuple):
    """One global batch as drawn, on the training device: uint8 images, labels and the batch's rows
    of the objective's `BatchObjective.per_sample_data`."""

    images: torch.Tensor
    labels: torch.Tensor
    per_sample: dict[str, torch.Tensor]


@dataclass(frozen=True)
class BatchViews:
    """What one batch trains on, as an objective prepared it.

    ``labels`` and every ``per_sample`` tensor hold one row per image (the views, mixup's partner
    labels...): under DDP each rank keeps the same slice of all of them. ``shared`` values hold
    for the whole batch (mixup's lam) and stay whole.
    """

    labels: torch.Tensor
    per_sample: dict[str, torch.Tensor]
    shared: dict[str, float] = field(default_factory=dict)

    def shard(self, start: int, stop: int) -> BatchViews:
        per_sample = {name: tensor[start:stop] for name, tensor in self.per_sample.items()}
        return BatchViews(self.labels[start:stop], per_sample, self.shared)


@dataclass(frozen=True)
class BatchLoss:
    """An objective's result for one batch (or this rank's slice of it)."""

    loss: torch.Tensor  # the scalar to minimise: a mean over the batch's images
    logits: torch.Tensor  # one row per label of the views: train top-1
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # scalar batch means -> history train_<name>


class BatchObjective(abc.ABC):
    """How a training batch becomes a loss: the hook of the one training loop (`train_with_objective`).

    Every step the loop calls `views` with the whole global batch and the run's seeded generator;
    every random draw of an objective must come from that generator, so a resumed or data-parallel
    run replays it. Under DDP each rank then keeps its slice of the views (`BatchViews.shard`) and
    calls `loss` inside autocast. A multi-view objective (pairs, AugMix, stability training) returns
    each view as a per-sample tensor and calls `forward` once on their concatenation: one pass per
    step, as DDP expects, with BatchNorm statistics over all views.
    """

    @abc.abstractmethod
    def identity(self) -> dict:
        """Name and parameters (plain values): a checkpoint written with others is another run."""

    def per_sample_data(self) -> dict[str, torch.Tensor]:
        """Tensors with one row per training image that `views` needs (e.g. foreground masks); the loop
        moves them to the device once and hands each batch its rows in `TrainBatch.per_sample`."""
        return {}

    @abc.abstractmethod
    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        """The training views of a global batch, augmented as `settings` ask with draws from `generator`."""

    @abc.abstractmethod
    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        """The loss of the views; `forward` maps float images in [0, 1] to logits (normalisation,
        channels_last, DDP and compile are the loop's), `loss_fn` is the run's task loss."""


class ClassifierObjective(BatchObjective):
    """Standard training: crop, flip and mixup as the settings ask (`augment_batch`), then the task loss."""

    IDENTITY = {"name": "classifier"}

    def identity(self) -> dict:
        return dict(self.IDENTITY)

    def views(self, batch: TrainBatch, settings: TrainSettings, generator: torch.Generator) -> BatchViews:
        images, labels, partner_labels, lam = augment_batch(batch.images, batch.labels, settings, generator)
        if settings.mixup_alpha > 0:
            return BatchViews(labels, {"images": images, "partner_labels": partner_labels}, {"lam": lam})
        return BatchViews(labels, {"images": images})

    def loss(self, forward: Forward, views: BatchViews, loss_fn: LossFn) -> BatchLoss:
        logits = forward(views.per_sample["images"])
        if "partner_labels" not in views.per_sample:
            return BatchLoss(loss_fn(logits, views.labels), logits)
        lam = views.shared["lam"]
        loss = lam * loss_fn(logits, views.labels) + (1 - lam) * loss_fn(logits, views.per_sample["partner_labels"])
        return BatchLoss(loss, logits)


# ----------------------------------------------------------------------------- checkpoints


_ZIP_HEAD = b"PK\x03\x04"
_EOCD_SIGNATURE = b"PK\x05\x06"  # a zip ends with this record: 22 bytes, then its comment
_EOCD_SIZE = 22
_SEAL_PREFIX = b"robustflow-sha256:"
_SEAL_SIZE = len(_SEAL_PREFIX) + 64  # the zip comment of a sealed checkpoint: the prefix and a hex digest
_HASH_CHUNK = 1 << 20
_CHECKPOINT_FIELDS = ("settings", "model", "optimizer", "scheduler", "generator", "history", "best", "ema_best")


class _DamagedCheckpoint(Exception):
    """A checkpoint that cannot be used (not the bytes written, unreadable, inconsistent, not fitting the
    model): the message says why. It is set aside, never refused like a checkpoint carrying code."""


def _load_checkpoint(path: Path) -> dict:
    """The checkpoint at `path`, unpickled with weights_only=True: a tampered file cannot run code.

    Raises `CheckpointError` when bytes as written need more than tensors and plain values (a
    pickle carrying code: refused, not damage), `_DamagedCheckpoint` when the bytes are not the
    ones written or torch cannot read them.
    """
    intact = _check_bytes(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickler_reason(error)
        # Intact bytes were written that way; in a file that is not a zip (nothing to verify it by)
        # a refused GLOBAL is a reference to code all the same.
        if intact or "GLOBAL " in reason:
            raise CheckpointError(
                f"refused to unpickle {path}: it holds more than tensors and plain values "
                f"({reason}); a checkpoint of this loop never does, so the file was "
                f"not written by it or was tampered with. Move it out of {path.parent} to train without it."
            ) from error
        raise _DamagedCheckpoint(f"torch.load failed: UnpicklingError: {reason}") from error
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as error:  # truncated, garbled: PytorchStreamReader's RuntimeError, EOFError, ...
        raise _DamagedCheckpoint(f"torch.load failed: {_describe(error)}") from error
    if not isinstance(checkpoint, dict):
        raise _DamagedCheckpoint(f"it holds a {type(checkpoint).__name__}, not a checkpoint's dict")
    return checkpoint


def _check_bytes(path: Path) -> bool:
    """True when the bytes at `path` are verified as written: the seal's SHA-256 matches, or (a zip
    without a seal) every record's CRC does; False for a file that is not a zip, which torch.load
    judges. Raises `_DamagedCheckpoint` for a zip (or sealed file) whose bytes changed or were cut."""
    tail_size = _EOCD_SIZE + _SEAL_SIZE
    with open(path, "rb") as file:
        size = file.seek(0, os.SEEK_END)
        file.seek(0)
        head = file.read(len(_ZIP_HEAD))
        file.seek(max(size - tail_size, 0))
        tail = file.read()
        end_record, seal = tail[:_EOCD_SIZE], tail[_EOCD_SIZE:]
        # Either half of the seal in place marks a sealed file: a garbled seal is damage, not "unsealed".
        if size >= tail_size and (end_record[:4] == _EOCD_SIGNATURE or seal.startswith(_SEAL_PREFIX)):
            if (end_record[:4] != _EOCD_SIGNATURE or end_record[20:] != _SEAL_SIZE.to_bytes(2, "little")
                    or not seal.startswith(_SEAL_PREFIX)):
                raise _DamagedCheckpoint("its seal (the zip comment holding its SHA-256 digest) is garbled")
            if _sha256(file, size - _SEAL_SIZE).hexdigest().encode() != seal[len(_SEAL_PREFIX):]:
                raise _DamagedCheckpoint("its bytes differ from the SHA-256 digest recorded when it was written")
            return True
    if head != _ZIP_HEAD:
        return False
    try:  # an unsealed zip (a checkpoint from before seals, or torch.save's): torch does not check CRCs
        with zipfile.ZipFile(path) as archive:
            bad_record = archive.testzip()
    except Exception as error:  # truncated or garbled: a damaged zip can fail to parse in many ways
        raise _DamagedCheckpoint(f"not a readable zip archive: {_describe(error)}") from error
    if bad_record is not None:
        raise _DamagedCheckpoint(f"the CRC of its record {bad_record} does not match the record's bytes")
    return True


def _seal_checkpoint(path: Path) -> None:
    """Record the SHA-256 of the zip torch.save wrote at `path` as the zip's comment, so that a changed,
    lost or added byte anywhere is found on load (zip CRCs cover record data only, and torch.load
    checks none). A file of another layout is left unsealed: its CRCs are checked instead."""
    with open(path, "r+b") as file:
        size = file.seek(0, os.SEEK_END)
        if size < len(_ZIP_HEAD) + _EOCD_SIZE:
            return
        file.seek(size - _EOCD_SIZE)
        end_record = file.read()
        if end_record[:4] != _EOCD_SIGNATURE or end_record[20:22] != b"\0\0":
            return
        comment_length = _SEAL_SIZE.to_bytes(2, "little")
        digest = _sha256(file, size - 2)
        digest.update(comment_length)
        file.seek(size - 2)
        file.write(comment_length + _SEAL_PREFIX + digest.hexdigest().encode())


def _sha256(file, length: int):
    """SHA-256 of the first `length` bytes of the open binary `file`."""
    digest = hashlib.sha256()
    file.seek(0)
    while length > 0:
        chunk = file.read(min(_HASH_CHUNK, length))
        if not chunk:
            break
        digest.update(chunk)
        length -= len(chunk)
    return digest


def _write_checkpoint(checkpoint: dict, path: Path, previous: Path) -> None:
    """Save `checkpoint` at `path`, sealed; the checkpoint it replaces becomes `previous`.

    `path` holds a whole checkpoint at every moment: the new file is written and sealed under a
    temporary name, the old one is linked (or copied) to `previous` atomically, and only then is
    the new one renamed over `path`.
    """
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
        _seal_checkpoint(tmp)
        if path.exists():
            with atomic_path(previous) as previous_tmp:
                previous_tmp.unlink()
                try:
                    os.link(path, previous_tmp)  # no copy: the replace below gives `path` a new file
                except OSError:  # no hard links on this file system
                    shutil.copyfile(path, previous_tmp)


def _set_aside(path: Path, reason: str) -> Path:
    """Rename the unusable checkpoint at `path` to ``<name>.unreadable-<UTC time>[-n]`` beside it,
    never over another file; returns the new path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for attempt in itertools.count(1):
        target = path.with_name(f"{path.name}.unreadable-{stamp}" + (f"-{attempt}" if attempt > 1 else ""))
        try:
            if _rename_unless_taken(path, target):
                return target
        except OSError as error:
            raise RuntimeError(f"{path} cannot be used ({reason}) and could not be moved aside: {error}") from error
    raise AssertionError("unreachable")


def _rename_unless_taken(source: Path, target: Path) -> bool:
    """Rename `source` to `target` unless `target` exists (then False): never overwrites."""
    try:
        os.link(source, target)  # fails on an existing target
    except FileExistsError:
        return False
    except OSError:  # no hard links on this file system
        if target.exists():
            return False
        os.rename(source, target)
        return True
    source.unlink()
    return True


def _describe(error: BaseException) -> str:
    """An exception's type and first line, short enough for a warning."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _unpickler_reason(error: pickle.UnpicklingError) -> str:
    """What torch's long weights_only message says was refused, without its advice to allowlist it."""
    for line in str(error).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0]
    return str(error)


def _run_identity(settings: dict, objective: dict) -> dict:
    return {"settings": {k: v for k, v in settings.items() if k not in EXECUTION_FIELDS}, "objective": objective}


def _remove_stale_temporaries(checkpoint_dir: Path) -> None:
    """Delete temp files of saves killed mid-write (atomic_path names them `.last.pt.*.tmp`)."""
    for name in (CHECKPOINT_NAME, PREVIOUS_CHECKPOINT_NAME):
        for stale in checkpoint_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _sigterm_flag() -> Iterator[Callable[[], bool]]:
    """Record SIGTERM instead of dying, so the loop stops between steps; yields 'was it received?'."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # handlers can only be installed from the main thread
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _rank_seed(seed: int, rank: int) -> int:
    """Seed of the global stream (dropout) of rank > 0; rank 0 continues the caller's stream."""
    return (seed * 1_000_003 + rank) % 2**63


def train_classifier(
    model: nn.Module,
    data: ImageSplits,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    *,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` with the standard objective (`ClassifierObjective`); see `train_with_objective`."""
    return train_with_objective(model, data, settings, checkpoint_dir, ClassifierObjective(), device=device,
                                on_epoch_end=on_epoch_end, progress=progress)


def train_with_objective(
    model: nn.Module,
    data: ImageSplits,
    settings: TrainSettings,
    checkpoint_dir: str | Path,
    objective: BatchObjective,
    *,
    device: torch.device | str = "cpu",
    on_epoch_end: Callable[[int, dict], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on `objective`, resuming from `checkpoint_dir/last.pt` when it holds this run
    (the same settings, execution options aside, and the same objective identity).

    The model must be freshly initialised from the run's seed; on resume its weights are
    replaced by the checkpoint's, so an interrupted run ends with exactly the history of
    an uninterrupted one (on CPU). SIGTERM ends the current step and raises
    `TrainingPreempted`. The history has a row per epoch: lr, train_loss, a ``train_<name>``
    column per metric of the objective, train_top1, then the validation metrics.

    With ``settings.devices > 1`` the run is data parallel (DDP): one spawned process per
    device, each training on its slice of every global batch; rank 0 evaluates, writes
    the checkpoint and runs `on_epoch_end` (which must then be picklable, as the objective).
    BatchNorm is synchronised across ranks on CUDA (SyncBatchNorm); on CPU (gloo), where
    SyncBatchNorm is not available, each rank normalises its shard with the shard's statistics.
    Dropout masks are drawn per rank.
    """
    device = torch.device(device)
    check_execution_settings(settings, device, len(data.train_x))
    job = _Job(model, data, settings, objective, Path(checkpoint_dir), on_epoch_end, progress)
    if settings.devices > 1:
        return _train_data_parallel(job, device)
    with _sigterm_flag() as sigterm_received:
        result = _train(job, device, sigterm_received)
    assert result is not None  # rank 0 always returns its result
    return result


@dataclass
class _Job:
    """One training request as the caller made it; data-parallel workers receive it whole."""

    model: nn.Module
    data: ImageSplits
    settings: TrainSettings
    objective: BatchObjective
    checkpoint_dir: Path
    on_epoch_end: Callable[[int, dict], None] | None
    progress: bool

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_dir / CHECKPOINT_NAME

    @property
    def previous_checkpoint_path(self) -> Path:
        return self.checkpoint_dir / PREVIOUS_CHECKPOINT_NAME


@dataclass
class _Run:
    """One process's side of a job: the placed model, its training forward and the training parts."""

    job: _Job
    model: nn.Module  # on the device; the module whose state is checkpointed
    forward: Forward  # float images in [0, 1] -> logits, through normalisation, DDP and compile
    parts: TrainingParts
    device: torch.device
    sigterm_received: Callable[[], bool]
    rank: int
    world_size: int

    @property
    def parallel(self) -> bool:
        return self.world_size > 1


@dataclass
class _LoopState:
    """What the loop carries from epoch to epoch besides the parts' own state: the history and the
    best epochs ``{epoch, top1, loss, state}`` of the model and of its EMA."""

    history: list[dict]
    best: dict
    ema_best: dict


class _TrainSet(NamedTuple):
    """The training split on the device, with the objective's per-sample tensors."""

    images: torch.Tensor
    labels: torch.Tensor
    per_sample: dict[str, torch.Tensor]

    def batch(self, indices: torch.Tensor) -> TrainBatch:
        per_sample = {name: tensor[indices] for name, tensor in self.per_sample.items()}
        return TrainBatch(self.images[indices], self.labels[indices], per_sample)


@dataclass
class _EpochTotals:
    """Sums over an epoch's training images: loss, correct top-1 predictions, the objective's metrics."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    metrics: dict[str, float] = field(default_factory=dict)

    def add(self, result: BatchLoss, labels: torch.Tensor) -> None:
        n = len(labels)
        self.loss += result.loss.item() * n
        for name, value in result.metrics.items():
            self.metrics[name] = self.metrics.get(name, 0.0) + value.item() * n
        self.correct += int((result.logits.argmax(1) == labels).sum())
        self.seen += n

    def summed_across_ranks(self, device: torch.device) -> _EpochTotals:
        loss, correct, seen, *sums = distributed.sum_across_ranks(
            [self.loss, self.correct, self.seen, *self.metrics.values()], device
        )
        return _EpochTotals(loss, correct, seen, dict(zip(self.metrics, sums)))

    def record(self, epoch: int, lr: float) -> dict:
        """The epoch's history row before validation adds its columns (plain floats and ints)."""
        metrics = {f"train_{name}": total / self.seen for name, total in self.metrics.items()}
        return {"epoch": epoch, "lr": lr, "train_loss": self.loss / self.seen, **metrics,
                "train_top1": self.correct / self.seen}


def _train_data_parallel(job: _Job, device: torch.device) -> TrainResult:
    threads = max(1, torch.get_num_threads() // job.settings.devices)  # the job's cores, shared by its ranks
    try:
        distributed.launch_workers(
            _data_parallel_worker,
            job.settings.devices,
            (job, device.type, torch.get_rng_state(), threads, logger.getEffectiveLevel()),
            distributed.backend_for(device.type),
        )
    except torch.multiprocessing.ProcessExitedException as error:
        if error.exit_code == PREEMPTED_EXIT_CODE:
            raise TrainingPreempted(
                f"SIGTERM: data-parallel training stopped; rerun to resume from {job.checkpoint_path}"
            ) from error
        raise
    checkpoint = _load_checkpoint(job.checkpoint_path)
    # As after a single-process run: the caller's model holds the last weights.
    job.model.load_state_dict(checkpoint["model"])
    state = _LoopState(checkpoint["history"], checkpoint["best"], checkpoint["ema_best"])
    return _result(state, has_ema=bool(job.settings.ema_decay))


def _data_parallel_worker(rank, world_size, job: _Job, device_type: str, parent_rng_state, threads: int,
                          log_level: int) -> None:
    torch.set_num_threads(threads)
    if rank == 0:  # rank 0 reports the epochs; its stderr is the job's (see `robustflow.io.log_to`)
        log_records_to(sys.stderr, log_level)
    # Spawned processes receive tensors in shared memory: without a private copy all ranks
    # would step the same parameters.
    job = dataclasses.replace(job, model=copy.deepcopy(job.model))
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Rank 0 continues the caller's CPU stream and seeds CUDA from the run's seed, as one process
    # whose caller seeded torch would; the other ranks get streams of their own.
    torch.set_rng_state(parent_rng_state)
    if rank == 0 and device.type == "cuda":
        torch.cuda.manual_seed(job.settings.seed)
    if rank > 0:
        torch.manual_seed(_rank_seed(job.settings.seed, rank))
    try:
        with _sigterm_flag() as sigterm_received:
            _train(job, device, sigterm_received, rank=rank, world_size=world_size)
    except TrainingPreempted:
        sys.exit(PREEMPTED_EXIT_CODE)


def _train(job: _Job, device: torch.device, sigterm_received: Callable[[], bool], rank: int = 0,
           world_size: int = 1) -> TrainResult | None:
    """The loop of one process; with world_size > 1 it runs inside an initialised process group."""
    model = _placed_model(job.model, job.settings, device, parallel=world_size > 1)
    if rank == 0:
        _remove_stale_temporaries(job.checkpoint_dir)
    parts = training_parts(model, job.settings, len(job.data.train_x))
    state = _resume_or_start(job, model, parts, device, rank, world_size)
    forward = _training_forward(job, model, device, world_size)  # after resume: DDP broadcasts the weights
    run = _Run(job, model, forward, parts, device, sigterm_received, rank, world_size)
    per_sample = {name: tensor.to(device) for name, tensor in job.objective.per_sample_data().items()}
    train_set = _TrainSet(job.data.train_x.to(device), job.data.train_y.to(device), per_sample)
    epochs = range(len(state.history) + 1, job.settings.epochs + 1)
    if rank == 0:
        _log_start(job, device, world_size, resumed_epochs=len(state.history))
    started = time.monotonic()
    for epoch in tqdm(epochs, desc="epochs", disable=not (job.progress and rank == 0), initial=len(state.history),
                      total=job.settings.epochs):
        epoch_started = time.monotonic()
        totals = _train_epoch(run, train_set, epoch)
        _end_epoch(run, state, epoch, totals)
        if rank == 0:
            now = time.monotonic()
            logger.info(_epoch_line(state, job.settings.epochs, now - epoch_started, now - started))
    return _result(state, has_ema=parts.ema is not None) if rank == 0 else None


def _log_start(job: _Job, device: torch.device, world_size: int, resumed_epochs: int) -> None:
    settings = job.settings
    resumed = f", resuming after epoch {resumed_epochs} of {job.checkpoint_path}" if resumed_epochs else ""
    logger.info(
        "training objective %s: %d epochs, batch %d, %s lr %g, %s schedule, loss %s, on %s x %d; %d train / %d val images%s",
        job.objective.identity(), settings.epochs, settings.batch_size, settings.optimizer,
        settings.lr, settings.schedule, settings.loss, device, world_size, len(job.data.train_x),
        len(job.data.val_x), resumed,
    )


def _epoch_line(state: _LoopState, epochs: int, seconds: float, elapsed: float) -> str:
    """The log line of the epoch just ended: its lr and train metrics, validation top-1 and loss,
    the best epochs so far and how long it took."""
    record = state.history[-1]
    shown = [key for key in record if key == "lr" or key.startswith("train_") or key in LOGGED_VALIDATION]
    metrics = " ".join(f"{key}={record[key]:.4g}" for key in shown)
    best = f"best val_top1={state.best['top1']:.4g}@{state.best['epoch']}"
    if "ema_val_top1" in record:
        best += f" best ema_val_top1={state.ema_best['top1']:.4g}@{state.ema_best['epoch']}"
    return f"epoch {record['epoch']}/{epochs} {metrics} {best} time={seconds:.1f}s elapsed={elapsed:.1f}s"


def _placed_model(model: nn.Module, settings: TrainSettings, device: torch.device, parallel: bool) -> nn.Module:
    if parallel and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if settings.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def _training_forward(job: _Job, model: nn.Module, device: torch.device, world_size: int) -> Forward:
    """Float images in [0, 1] -> logits: channels_last and normalisation, then DDP and compile as asked."""
    module = model
    if world_size > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if job.settings.compile:
        module = torch.compile(module)
    channels_last = job.settings.channels_last and device.type == "cuda"
    mean, std = job.data.mean, job.data.std

    def forward(images: torch.Tensor) -> torch.Tensor:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return module(normalize(images, mean, std))

    return forward


def _resume_or_start(job: _Job, model: nn.Module, parts: TrainingParts, device: torch.device,
                     rank: int, world_size: int) -> _LoopState:
    """The loop state of a fresh run, or of the newest usable checkpoint when it holds this run: the
    model, optimizer, schedule, EMA, generator and this rank's RNG streams then continue from it too.

    Under DDP rank 0 looks first and sets unusable checkpoints aside; the other ranks then find
    the checkpoint it resumed from in its place.
    """
    parallel = world_size > 1
    if parallel and rank > 0:
        torch.distributed.barrier()
    state = _resume(job, model, parts, device, rank)
    if parallel and rank == 0:
        torch.distributed.barrier()
    if state is None:
        ema_module = parts.ema.module if parts.ema else None
        return _LoopState(history=[], best=_initial_best(model), ema_best=_initial_best(ema_module))
    return state


def _resume(job: _Job, model: nn.Module, parts: TrainingParts, device: torch.device, rank: int) -> _LoopState | None:
    """Restore the newest usable checkpoint of this run (last.pt, else previous.pt) into the model and
    parts and return its loop state; None when the run starts from scratch.

    A checkpoint of other settings ends the search (train from scratch, as the config changed); one
    that cannot be used is set aside by rank 0 and the model and parts are put back as they were.
    """
    candidates = [path for path in (job.checkpoint_path, job.previous_checkpoint_path) if path.exists()]
    if not candidates:
        return None
    fresh = _FreshState.of(model, parts, device)
    set_aside = False
    for path in candidates:
        try:
            checkpoint = _load_checkpoint(path)
            _check_fields(checkpoint)
            if not _written_by_this_run(checkpoint, job):
                # The config changed since this checkpoint: its run is not the one asked for.
                if rank == 0:
                    warnings.warn(f"ignoring {path}: written with other settings or objective; training from scratch")
                return None
            _check_consistent(checkpoint, job, model)
            state = _restore(checkpoint, model, parts, device, rank)
        except _DamagedCheckpoint as damage:
            fresh.put_back(model, parts, device)
            if rank == 0:
                moved = _set_aside(path, str(damage))
                warnings.warn(f"checkpoint {path} cannot be used ({damage}); moved it to {moved} for inspection",
                              UnreadableCheckpointWarning)
            set_aside = True
            continue
        if rank == 0 and path != job.checkpoint_path:
            why = "the newer one was set aside" if set_aside else f"{job.checkpoint_path} is missing"
            warnings.warn(f"resuming from {path} (epoch {len(state.history)}): {why}", UnreadableCheckpointWarning)
        return state
    if rank == 0:
        warnings.warn(f"no usable checkpoint left in {job.checkpoint_dir}; training from scratch",
                      UnreadableCheckpointWarning)
    return None


def _check_fields(checkpoint: dict) -> None:
    """Raise `_DamagedCheckpoint` unless every field the loop writes is there."""
    missing = [name for name in _CHECKPOINT_FIELDS if name not in checkpoint]
    if "torch_rng" not in checkpoint and not checkpoint.get("rank_rng"):
        missing.append("torch_rng")
    if missing:
        raise _DamagedCheckpoint(f"it lacks the fields {missing}")
    if not isinstance(checkpoint["settings"], dict) or not isinstance(checkpoint.get("objective", {}), dict):
        raise _DamagedCheckpoint("its settings or objective are not mappings")


def _written_by_this_run(checkpoint: dict, job: _Job) -> bool:
    # Checkpoints from before the objective was recorded are the classifier's.
    written = _run_identity(checkpoint["settings"], checkpoint.get("objective", ClassifierObjective.IDENTITY))
    return written == _run_identity(asdict(job.settings), job.objective.identity())


def _check_consistent(checkpoint: dict, job: _Job, model: nn.Module) -> None:
    """Raise `_DamagedCheckpoint` unless the history, the best epochs and the schedule of a checkpoint
    of this run agree with one another and the best states fit the model."""
    history = checkpoint["history"]
    if not isinstance(history, list) or not all(isinstance(row, dict) for row in history):
        raise _DamagedCheckpoint("its history is not a list of epoch records")
    epochs = [row.get("epoch") for row in history]
    if epochs != list(range(1, len(history) + 1)) or len(history) > job.settings.epochs:
        raise _DamagedCheckpoint(f"its history holds the epochs {epochs}, not 1 to at most {job.settings.epochs}")
    steps_per_epoch = math.ceil(len(job.data.train_x) / job.settings.batch_size)
    scheduler = checkpoint["scheduler"]
    steps = scheduler.get("last_epoch") if isinstance(scheduler, dict) else None
    if steps != len(history) * steps_per_epoch:
        raise _DamagedCheckpoint(
            f"its schedule stands at step {steps}, not at the {len(history) * steps_per_epoch} steps of "
            f"its {len(history)} epochs"
        )
    if job.settings.ema_decay and not isinstance(checkpoint.get("ema"), dict):
        raise _DamagedCheckpoint("it lacks the EMA weights of this run")
    shapes = _shapes(model.state_dict())
    for key, column in (("best", "val_top1"), ("ema_best", "ema_val_top1")):
        best = checkpoint[key]
        epoch = best.get("epoch") if isinstance(best, dict) else None
        if not isinstance(epoch, int) or not 0 <= epoch <= len(history):
            raise _DamagedCheckpoint(f"its {key} epoch is {epoch!r}, outside its history of {len(history)} epochs")
        if epoch > 0 and history[epoch - 1].get(column) != best.get("top1"):
            raise _DamagedCheckpoint(f"its {key} top-1 {best.get('top1')!r} is not the {column} of epoch {epoch}")
        state = best.get("state")
        if state is not None and _shapes(state) != shapes:
            raise _DamagedCheckpoint(f"its {key} weights do not fit the model")


def _shapes(state) -> dict | None:
    """Name -> shape of a state dict's tensors; None if `state` is not a dict of tensors."""
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        return None
    return {name: tuple(value.shape) for name, value in state.items()}


def _restore(checkpoint: dict, model: nn.Module, parts: TrainingParts, device: torch.device,
             rank: int) -> _LoopState:
    """Load a checkpoint of this run into the model and parts; `_DamagedCheckpoint` if it does not fit."""
    try:
        model.load_state_dict(checkpoint["model"])
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        parts.scheduler.load_state_dict(checkpoint["scheduler"])
        if parts.ema:
            parts.ema.module.load_state_dict(checkpoint["ema"])
        parts.generator.set_state(checkpoint["generator"])
        rank_rng = checkpoint.get("rank_rng") or [(checkpoint["torch_rng"], checkpoint["cuda_rng"])]
        if rank < len(rank_rng):
            torch_rng, cuda_rng = rank_rng[rank]
            torch.set_rng_state(torch_rng)
            if device.type == "cuda" and cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)
    except (MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as error:  # shapes or keys that do not fit: load_state_dict's RuntimeError, ...
        raise _DamagedCheckpoint(f"it does not fit this run's model or training state: {_describe(error)}") from error
    return _LoopState(checkpoint["history"], checkpoint["best"], checkpoint["ema_best"])


class _FreshState(NamedTuple):
    """What `_restore` changes, as it was before: put back when a checkpoint fails halfway through."""

    model: dict
    optimizer: dict
    scheduler: dict
    ema: dict | None
    generator: torch.Tensor
    torch_rng: torch.Tensor
    cuda_rng: torch.Tensor | None

    @classmethod
    def of(cls, model: nn.Module, parts: TrainingParts, device: torch.device) -> _FreshState:
        return cls(_state_copy(model), copy.deepcopy(parts.optimizer.state_dict()),
                   copy.deepcopy(parts.scheduler.state_dict()), _state_copy(parts.ema.module) if parts.ema else None,
                   parts.generator.get_state(), *_rng_states(device))

    def put_back(self, model: nn.Module, parts: TrainingParts, device: torch.device) -> None:
        model.load_state_dict(self.model)
        parts.optimizer.load_state_dict(self.optimizer)
        parts.scheduler.load_state_dict(self.scheduler)
        if parts.ema:
            parts.ema.module.load_state_dict(self.ema)
        parts.generator.set_state(self.generator)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, device)


def _initial_best(model: nn.Module | None) -> dict:
    return {"epoch": 0, "top1": -1.0, "loss": math.inf, "state": _state_copy(model) if model is not None else None}


def _train_epoch(run: _Run, train_set: _TrainSet, epoch: int) -> _EpochTotals:
    """One pass over the training set; the totals are summed over ranks."""
    run.model.train()
    totals = _EpochTotals()
    for indices in iterate_minibatches(len(train_set.labels), run.job.settings.batch_size, run.parts.generator,
                                       shuffle=True):
        _stop_if_preempted(run, epoch)
        result, labels = _train_step(run, train_set.batch(indices.to(run.device)), epoch)
        totals.add(result, labels)
    return totals.summed_across_ranks(run.device) if run.parallel else totals


def _stop_if_preempted(run: _Run, epoch: int) -> None:
    received = run.sigterm_received()
    if run.parallel:
        received = distributed.any_rank(received, run.device)  # all ranks stop at the same step
    if received:
        raise TrainingPreempted(
            f"SIGTERM during epoch {epoch}: stopped after the last full step; "
            f"rerun to resume from {run.job.checkpoint_path} (epoch {epoch - 1})"
        )


def _train_step(run: _Run, batch: TrainBatch, epoch: int) -> tuple[BatchLoss, torch.Tensor]:
    """One optimizer step on `batch`; returns the objective's result and the labels it scored."""
    settings, parts = run.job.settings, run.parts
    # Every rank draws the whole global batch from the shared generator, then keeps its slice.
    views = run.job.objective.views(batch, settings, parts.generator)
    shard_weight = 1.0
    if run.parallel:
        start, stop = distributed.shard_bounds(len(views.labels), run.rank, run.world_size)
        # DDP averages gradients over ranks; this makes the sum the global-batch mean gradient.
        shard_weight = (stop - start) * run.world_size / len(views.labels)
        views = views.shard(start, stop)
    with autocast_context(run.device, settings.amp):
        result = run.job.objective.loss(run.forward, views, parts.loss_fn)
    if not torch.isfinite(result.loss):
        raise TrainingDivergedError(
            f"loss became {result.loss.item()} at epoch {epoch} (lr {parts.scheduler.get_last_lr()[0]:.3g}); "
            f"training stopped, last good checkpoint: {run.job.checkpoint_path}. "
            "Lower the learning rate, the margin lambda or the objective's regularisation weight."
        )
    parts.optimizer.zero_grad(set_to_none=True)
    (result.loss * shard_weight if run.parallel else result.loss).backward()
    parts.optimizer.step()
    parts.scheduler.step()
    if parts.ema:
        parts.ema.update(run.model)
    return result, views.labels


def _end_epoch(run: _Run, state: _LoopState, epoch: int, totals: _EpochTotals) -> None:
    rank_rng = distributed.gather_objects(_rng_states(run.device)) if run.parallel else None
    if run.rank == 0:
        _finish_epoch(run, state, epoch, totals, rank_rng)
    if run.parallel:
        torch.distributed.barrier()  # no rank runs ahead of the checkpoint of this epoch


def _finish_epoch(run: _Run, state: _LoopState, epoch: int, totals: _EpochTotals, rank_rng: list | None) -> None:
    """Validate, pick the best epochs, write the checkpoint, report (rank 0's work at the end of an epoch)."""
    record = totals.record(epoch, run.parts.scheduler.get_last_lr()[0])
    state.best = _validate(run, run.model, epoch, state.best, record, "val")
    if run.parts.ema:
        state.ema_best = _validate(run, run.parts.ema.module, epoch, state.ema_best, record, "ema_val")
    state.history.append(record)
    _save_checkpoint(run, state, rank_rng)
    if run.job.on_epoch_end is not None:
        run.job.on_epoch_end(epoch, record)


def _validate(run: _Run, model: nn.Module, epoch: int, best: dict, record: dict, prefix: str) -> dict:
    """Validate `model` after `epoch`, adding its metrics to `record` as ``<prefix>_<metric>``;
    returns the best-epoch record ``{epoch, top1, loss, state}``, replaced when `is_better`."""
    data, settings = run.job.data, run.job.settings
    logits = predict_logits(model, data.val_x, data.mean, data.std, settings.eval_batch_size, run.device, settings.amp)
    val = classification_metrics(logits, data.val_y)
    val["loss"] = float(run.parts.loss_fn(logits, data.val_y))
    record.update({f"{prefix}_{k}": v for k, v in val.items()})
    if is_better(val, best):
        return {"epoch": epoch, "top1": val["top1"], "loss": val["loss"], "state": _state_copy(model)}
    return best


def _save_checkpoint(run: _Run, state: _LoopState, rank_rng: list | None) -> None:
    parts = run.parts
    torch_rng, cuda_rng = _rng_states(run.device)
    _write_checkpoint(
        {
            "settings": asdict(run.job.settings),
            "objective": run.job.objective.identity(),
            "model": run.model.state_dict(),
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "ema": parts.ema.module.state_dict() if parts.ema else None,
            "generator": parts.generator.get_state(),
            "torch_rng": torch_rng,  # dropout draws from the global streams
            "cuda_rng": cuda_rng,
            "rank_rng": rank_rng,  # data parallel: (torch, cuda) streams of every rank
            "history": state.history,
            "best": state.best,
            "ema_best": state.ema_best,
        },
        run.job.checkpoint_path,
        run.job.previous_checkpoint_path,
    )


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _rng_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _result(state: _LoopState, has_ema: bool) -> TrainResult:
    return TrainResult(
        history=pd.DataFrame(state.history),
        best_epoch=state.best["epoch"],
        best_state=state.best["state"],
        ema_best_epoch=state.ema_best["epoch"] if has_ema else None,
        ema_best_state=state.ema_best["state"] if has_ema else None,
    )
