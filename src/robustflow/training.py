"""Supervised training of image classifiers on tensor-resident data.

One loop serves every study: SGD/AdamW, cosine/step schedules, an EMA of the weights
(evaluated separately), mixup, best-epoch selection on validation top-1, a per-epoch
history, an atomic checkpoint every epoch and exact resume from it.

Execution options (`amp`, `channels_last`, `compile`, `devices`) change how a run is
computed, not which run it is: a checkpoint resumes across them. SIGTERM (a scheduler's
preemption notice) ends the current step and raises `TrainingPreempted`; the checkpoint
of the last full epoch stays valid and a rerun resumes from it.
"""

from __future__ import annotations

import contextlib
import copy
import math
import signal
import sys
import threading
import warnings
from dataclasses import asdict, dataclass, field, fields
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
from robustflow.io import atomic_torch_save
from robustflow.losses import build_loss
from robustflow.metrics import classification_metrics

CHECKPOINT_NAME = "last.pt"
# Fields that choose how a run is computed, not which run it is (see the module docstring).
EXECUTION_FIELDS = ("amp", "channels_last", "compile", "devices")
# Exit code of a data-parallel worker stopped by SIGTERM (128 + SIGTERM, as a shell reports it).
PREEMPTED_EXIT_CODE = 128 + signal.SIGTERM


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingPreempted(RuntimeError):
    """SIGTERM arrived; the checkpoint of the last full epoch is kept, a rerun resumes from it."""


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
    images = to_unit_float(images)
    if settings.crop_padding:
        images = random_crop(images, settings.crop_padding, generator)
    if settings.flip:
        images = random_flip(images, generator)
    if settings.mixup_alpha > 0:
        return mixup(images, labels, settings.mixup_alpha, generator)
    return images, labels, labels, 1.0


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


class TrainingParts(NamedTuple):
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ema: ModelEma | None
    generator: torch.Generator


def training_parts(model: nn.Module, settings: TrainSettings, n_train: int) -> TrainingParts:
    """What a training loop builds from its settings: the loss, the optimizer with its per-step
    schedule, the EMA (if asked for) and the seeded generator of data order and augmentation."""
    optimizer = build_optimizer(model, settings)
    return TrainingParts(
        loss_fn=build_loss(settings.loss, **settings.loss_params),
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, settings, math.ceil(n_train / settings.batch_size)),
        ema=ModelEma(model, settings.ema_decay) if settings.ema_decay else None,
        generator=torch.Generator().manual_seed(settings.seed),
    )


def validate_epoch(model, data: ImageSplits, loss_fn, settings, device, epoch: int, best: dict, record: dict,
                   prefix: str) -> dict:
    """Validate ``model`` after ``epoch``, adding its metrics to ``record`` as ``<prefix>_<metric>``;
    returns the best-epoch record ``{epoch, top1, loss, state}``, replaced when `is_better`."""
    val = _evaluate(model, data.val_x, data.val_y, data, loss_fn, settings, device)
    record.update({f"{prefix}_{k}": v for k, v in val.items()})
    if is_better(val, best):
        return {"epoch": epoch, "top1": val["top1"], "loss": val["loss"], "state": _state_copy(model)}
    return best


def _evaluate(model, images, labels, data: ImageSplits, loss_fn, settings, device) -> dict:
    logits = predict_logits(model, images, data.mean, data.std, settings.eval_batch_size, device, settings.amp)
    metrics = classification_metrics(logits, labels)
    metrics["loss"] = float(loss_fn(logits, labels))
    return metrics


def _state_copy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _run_identity(settings: dict) -> dict:
    return {k: v for k, v in settings.items() if k not in EXECUTION_FIELDS}


def _remove_stale_temporaries(checkpoint_path: Path) -> None:
    """Delete temp files of saves killed mid-write (atomic_path names them `.last.pt.*.tmp`)."""
    for stale in checkpoint_path.parent.glob(f".{checkpoint_path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


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
    """Train `model`, resuming from `checkpoint_dir/last.pt` when it exists.

    The model must be freshly initialised from the run's seed; on resume its weights are
    replaced by the checkpoint's, so an interrupted run ends with exactly the history of
    an uninterrupted one (on CPU). SIGTERM ends the current step and raises
    `TrainingPreempted`.

    With ``settings.devices > 1`` the run is data parallel (DDP): one spawned process per
    device, each training on its slice of every global batch; rank 0 evaluates, writes
    the checkpoint and runs `on_epoch_end` (which must then be picklable). BatchNorm is
    synchronised across ranks on CUDA (SyncBatchNorm); on CPU (gloo), where SyncBatchNorm
    is not available, each rank normalises its shard with the shard's statistics.
    Dropout masks are drawn per rank.
    """
    device = torch.device(device)
    check_execution_settings(settings, device, len(data.train_x))
    if settings.devices > 1:
        return _train_data_parallel(model, data, settings, Path(checkpoint_dir), device, on_epoch_end, progress)
    with _sigterm_flag() as sigterm_received:
        result = _train(model, data, settings, Path(checkpoint_dir), device, on_epoch_end, progress, sigterm_received)
    assert result is not None  # rank 0 always returns its result
    return result


def _train_data_parallel(model, data, settings, checkpoint_dir: Path, device, on_epoch_end, progress) -> TrainResult:
    threads = max(1, torch.get_num_threads() // settings.devices)  # the job's cores, shared by its ranks
    try:
        distributed.launch_workers(
            _data_parallel_worker,
            settings.devices,
            (model, data, settings, checkpoint_dir, device.type, on_epoch_end, progress,
             torch.get_rng_state(), threads),
            distributed.backend_for(device.type),
        )
    except torch.multiprocessing.ProcessExitedException as error:
        if error.exit_code == PREEMPTED_EXIT_CODE:
            raise TrainingPreempted(
                f"SIGTERM: data-parallel training stopped; rerun to resume from {checkpoint_dir / CHECKPOINT_NAME}"
            ) from error
        raise
    state = torch.load(checkpoint_dir / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])  # as after a single-process run: the caller's model holds the last weights
    has_ema = bool(settings.ema_decay)
    return TrainResult(
        history=pd.DataFrame(state["history"]),
        best_epoch=state["best"]["epoch"],
        best_state=state["best"]["state"],
        ema_best_epoch=state["ema_best"]["epoch"] if has_ema else None,
        ema_best_state=state["ema_best"]["state"] if has_ema else None,
    )


def _data_parallel_worker(rank, world_size, model, data, settings, checkpoint_dir, device_type, on_epoch_end,
                          progress, parent_rng_state, threads) -> None:
    torch.set_num_threads(threads)
    # Spawned processes receive tensors in shared memory: without a private copy all ranks
    # would step the same parameters.
    model = copy.deepcopy(model)
    device = torch.device("cuda", rank) if device_type == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # Rank 0 continues the caller's CPU stream and seeds CUDA from the run's seed, as one process
    # whose caller seeded torch would; the other ranks get streams of their own.
    torch.set_rng_state(parent_rng_state)
    if rank == 0 and device.type == "cuda":
        torch.cuda.manual_seed(settings.seed)
    if rank > 0:
        torch.manual_seed(_rank_seed(settings.seed, rank))
    try:
        with _sigterm_flag() as sigterm_received:
            _train(model, data, settings, checkpoint_dir, device, on_epoch_end if rank == 0 else None,
                   progress and rank == 0, sigterm_received, rank=rank, world_size=world_size)
    except TrainingPreempted:
        sys.exit(PREEMPTED_EXIT_CODE)


def _train(
    model: nn.Module,
    data: ImageSplits,
    settings: TrainSettings,
    checkpoint_dir: Path,
    device: torch.device,
    on_epoch_end: Callable[[int, dict], None] | None,
    progress: bool,
    sigterm_received: Callable[[], bool],
    rank: int = 0,
    world_size: int = 1,
) -> TrainResult | None:
    """The loop of one process; with world_size > 1 it runs inside an initialised process group."""
    parallel = world_size > 1
    if parallel and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if settings.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    checkpoint_path = checkpoint_dir / CHECKPOINT_NAME
    if rank == 0:
        _remove_stale_temporaries(checkpoint_path)
    loss_fn, optimizer, scheduler, ema, generator = training_parts(model, settings, len(data.train_x))
    history: list[dict] = []
    best = {"epoch": 0, "top1": -1.0, "loss": math.inf, "state": _state_copy(model)}
    ema_best = {"epoch": 0, "top1": -1.0, "loss": math.inf, "state": _state_copy(ema.module) if ema else None}

    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False) if checkpoint_path.exists() else None
    if state is not None and _run_identity(state["settings"]) != _run_identity(asdict(settings)):
        # The config changed since this checkpoint: its run is not the one asked for.
        if rank == 0:
            warnings.warn(f"ignoring {checkpoint_path}: written with other settings; training from scratch")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema:
            ema.module.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        rank_rng = state.get("rank_rng") or [(state["torch_rng"], state["cuda_rng"])]
        if rank < len(rank_rng):
            torch_rng, cuda_rng = rank_rng[rank]
            torch.set_rng_state(torch_rng)
            if device.type == "cuda" and cuda_rng is not None:
                torch.cuda.set_rng_state(cuda_rng, device)
        history, best, ema_best = state["history"], state["best"], state["ema_best"]

    train_module = model
    if parallel:
        train_module = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward = torch.compile(train_module) if settings.compile else train_module
    channels_last = settings.channels_last and device.type == "cuda"
    train_x = data.train_x.to(device)
    train_y = data.train_y.to(device)
    epochs = range(len(history) + 1, settings.epochs + 1)
    for epoch in tqdm(epochs, desc="epochs", disable=not progress, initial=len(history), total=settings.epochs):
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for indices in iterate_minibatches(len(train_x), settings.batch_size, generator, shuffle=True):
            stop = distributed.any_rank(sigterm_received(), device) if parallel else sigterm_received()
            if stop:
                raise TrainingPreempted(
                    f"SIGTERM during epoch {epoch}: stopped after the last full step; "
                    f"rerun to resume from {checkpoint_path} (epoch {len(history)})"
                )
            indices = indices.to(device)
            # Every rank draws the whole global batch from the shared generator, then keeps its slice.
            images, labels, labels_b, lam = augment_batch(train_x[indices], train_y[indices], settings, generator)
            shard_weight = 1.0
            if parallel:
                start, stop_index = distributed.shard_bounds(len(labels), rank, world_size)
                # DDP averages gradients over ranks; this makes the sum the global-batch mean gradient.
                shard_weight = (stop_index - start) * world_size / len(labels)
                images, labels, labels_b = (t[start:stop_index] for t in (images, labels, labels_b))
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with autocast_context(device, settings.amp):
                logits = forward(normalize(images, data.mean, data.std))
                if settings.mixup_alpha > 0:
                    loss = lam * loss_fn(logits, labels) + (1 - lam) * loss_fn(logits, labels_b)
                else:
                    loss = loss_fn(logits, labels)
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss.item()} at epoch {epoch} (lr {scheduler.get_last_lr()[0]:.3g}); "
                    f"training stopped, last good checkpoint: {checkpoint_path}. "
                    "Lower the learning rate or the margin lambda."
                )
            optimizer.zero_grad(set_to_none=True)
            (loss * shard_weight if parallel else loss).backward()
            optimizer.step()
            scheduler.step()
            if ema:
                ema.update(model)
            loss_sum += loss.item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)

        rank_rng = None
        if parallel:
            loss_sum, correct, seen = distributed.sum_across_ranks([loss_sum, correct, seen], device)
            rank_rng = distributed.gather_objects(_rng_states(device))
        if rank == 0:
            history, best, ema_best = _finish_epoch(
                epoch, loss_sum, correct, seen, model, ema, data, loss_fn, settings, device, scheduler,
                optimizer, generator, history, best, ema_best, rank_rng, checkpoint_path, on_epoch_end,
            )
        if parallel:
            torch.distributed.barrier()  # no rank runs ahead of the checkpoint of this epoch

    if rank != 0:
        return None
    return TrainResult(
        history=pd.DataFrame(history),
        best_epoch=best["epoch"],
        best_state=best["state"],
        ema_best_epoch=ema_best["epoch"] if ema else None,
        ema_best_state=ema_best["state"] if ema else None,
    )


def _rng_states(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _finish_epoch(epoch, loss_sum, correct, seen, model, ema, data, loss_fn, settings, device, scheduler,
                  optimizer, generator, history, best, ema_best, rank_rng, checkpoint_path, on_epoch_end):
    """Validate, pick the best epoch, write the checkpoint (rank 0's work at the end of an epoch)."""
    record = {"epoch": epoch, "lr": scheduler.get_last_lr()[0], "train_loss": loss_sum / seen,
              "train_top1": correct / seen}
    best = validate_epoch(model, data, loss_fn, settings, device, epoch, best, record, "val")
    if ema:
        ema_best = validate_epoch(ema.module, data, loss_fn, settings, device, epoch, ema_best, record, "ema_val")
    history.append(record)

    torch_rng, cuda_rng = _rng_states(device)
    atomic_torch_save(
        {
            "settings": asdict(settings),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "ema": ema.module.state_dict() if ema else None,
            "generator": generator.get_state(),
            "torch_rng": torch_rng,  # dropout draws from the global streams
            "cuda_rng": cuda_rng,
            "rank_rng": rank_rng,  # data parallel: (torch, cuda) streams of every rank
            "history": history,
            "best": best,
            "ema_best": ema_best,
        },
        checkpoint_path,
    )
    if on_epoch_end is not None:
        on_epoch_end(epoch, record)
    return history, best, ema_best
