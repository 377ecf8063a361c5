"""The architecture study's steps (source 002): CNN vs ViT, from scratch vs pretrained, on
CIFAR-10 (Exp 1), CIFAR-10-C (Exp 2) and after fine-tuning on CIFAR-10-C (Exp 3).

Each public function is one step of the DAG, ``step(config, job, inputs, outputs)`` (see
`robustflow.studies`). A *variant* is a model x {scratch, pretrained}; a *run* is a variant x seed.

Pretrained weights come from one of two places (``models[i].pretrained_source``):

- ``timm``: ImageNet weights from a local file or the offline Hugging Face cache, via
  `create_model` (the paper setting; source 002 used timm's ImageNet-1k weights).
- ``source_task`` (the offline default): `pretrain` trains the model on a disjoint
  source task, the study dataset's *train* split restricted to ``source_task.classes``
  (labels renumbered). The target task then uses all classes; the source checkpoint is loaded
  with its classifier dropped (re-initialised for the target's class count). The source task
  never sees a validation or test image, so pretraining cannot leak evaluation data.

CIFAR-10-C comes from the official files when the study dataset is ``cifar10`` and they are
present under ``cifar10c.root``; otherwise `prepare_cifar10c` generates the same layout once
from the study's clean test split with the batched corruption engine.

Fine-tuning split (Exp 3, per corruption): images are split by their index in the clean test
set, the same indices in every severity block, so no clean image is in both train and test:
the first 90% of indices are train+val (a seeded 90/10 split), the last 10% are the test set,
evaluated at every severity.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from robustflow.corruption_names import SEVERITIES
from robustflow.data import ImageSplits, load_dataset
from robustflow.data.cifar10c import check_cifar10c, load_cifar10c, write_cifar10c
from robustflow.device import resolve_device
from robustflow.io import (
    atomic_torch_save,
    checkpoint_dir,
    write_csv,
    write_json,
)
from robustflow.metrics import classification_metrics
from robustflow.models import create_model
from robustflow.studies.architecture.plan import (
    CLEAN,
    RUN_COLUMNS,
    corruptions,
    finetune_groups,
)
from robustflow.training import TrainSettings, predict_logits, train_classifier

CELL_METRICS = ["top1", "top5", "nll", "ece"]
MANIFEST_NAME = "manifest.json"
FINETUNE_TRAINVAL_FRACTION = 0.9
FINETUNE_VAL_FRACTION = 0.1


# ----------------------------------------------------------------------------- config helpers


def _study(config: dict) -> dict:
    return config["architecture_study"]


def model_spec(config: dict, model_id: str) -> dict:
    """The ``architecture_study.models`` entry with ``id == model_id``."""
    for spec in _study(config)["models"]:
        if spec["id"] == model_id:
            return spec
    ids = [spec["id"] for spec in _study(config)["models"]]
    raise ValueError(f"model_id {model_id!r} is not in architecture_study.models (ids: {ids})")


def study_data(config: dict) -> ImageSplits:
    name = _study(config)["dataset"]
    return load_dataset(name, **config["datasets"][name])


def _settings(block: Mapping, seed: int, **overrides) -> TrainSettings:
    return TrainSettings.from_config(block, **overrides, seed=seed)


class ResizedInput(nn.Module):
    """Resizes inputs bilinearly to ``size`` before ``model``: e.g. ViT-S/16 at 224 on 32x32 data."""

    def __init__(self, model: nn.Module, size: int) -> None:
        super().__init__()
        self.model = model
        self.size = int(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False))


def build_model(config: dict, model_id: str, num_classes: int, image_size: int, seed: int,
                pretrained_file: str | Path | None = None, pretrained: bool = False) -> nn.Module:
    """The model of ``model_id`` (seeded init), wrapped in `ResizedInput` when its
    ``input_size`` differs from the data's ``image_size``."""
    spec = model_spec(config, model_id)
    input_size = spec["input_size"] or image_size
    torch.manual_seed(seed)  # the seed fixes the initial weights (and the re-initialised head)
    model = create_model(spec["name"], num_classes=num_classes, img_size=input_size, pretrained=pretrained,
                         pretrained_file=pretrained_file, **spec["kwargs"])
    return model if input_size == image_size else ResizedInput(model, input_size)


def _unwrapped(model: nn.Module) -> nn.Module:
    return model.model if isinstance(model, ResizedInput) else model


def _run_model(config: dict, run: Mapping, data: ImageSplits, pretrained_path: str | Path | None) -> nn.Module:
    spec = model_spec(config, run["model"])
    if run["init"] == "scratch":
        return build_model(config, run["model"], data.num_classes, data.image_size, run["seed"])
    if spec["pretrained_source"] == "timm":
        weights = spec["pretrained_file"]
    else:
        if pretrained_path is None:
            raise ValueError(f"run {run['run']!r}: pretrained_source is source_task, so pretrained_path "
                             "(the output of the pretrain step) is required")
        weights = pretrained_path
    return build_model(config, run["model"], data.num_classes, data.image_size, run["seed"],
                       pretrained_file=weights, pretrained=True)


def _load_trained(config: dict, run: Mapping, data: ImageSplits, model_path: str | Path) -> nn.Module:
    weights = torch.load(model_path, map_location="cpu", weights_only=True)
    model = build_model(config, run["model"], data.num_classes, data.image_size, run["seed"])
    model.load_state_dict(weights["state"])
    return model


# ----------------------------------------------------------------------------- CIFAR-10-C


def prepare_cifar10c(config: dict, job: dict, inputs, outputs) -> None:
    """Make CIFAR-10-C available once for all evaluation jobs; writes ``outputs.manifest``.

    With dataset ``cifar10`` and the official files under ``cifar10c.root`` (layout checked,
    labels equal to the CIFAR-10 test labels) the manifest points there. Otherwise the layout
    is generated beside the manifest from the study's clean test split. Evaluation jobs find
    the files through the manifest (`cifar10c_root`).
    """
    study = _study(config)
    names = corruptions(config)
    data = study_data(config)
    out_root = Path(outputs.manifest).parent
    official = Path(study["cifar10c"]["root"]) if study["cifar10c"]["root"] else None
    manifest = {"corruptions": names, "n_images": len(data.test_y), "dataset": study["dataset"]}
    if study["dataset"] == "cifar10" and official is not None and (official / "labels.npy").is_file():
        check_cifar10c(official, names)
        labels = np.load(official / "labels.npy", mmap_mode="r")
        if len(labels) != len(SEVERITIES) * len(data.test_y) or not np.array_equal(
                labels[: len(data.test_y)], data.test_y.numpy()):
            raise ValueError(f"{official / 'labels.npy'}: labels do not match the CIFAR-10 test labels in "
                             "order; cifar10c.root must hold the official CIFAR-10-C files")
        manifest.update(source="official", root=str(official.resolve()))
    else:
        generated = out_root / "data"
        write_cifar10c(generated, data.test_x, data.test_y, names, seed=study["cifar10c"]["seed"],
                       device=resolve_device(config["device"]))
        manifest.update(source="generated", root=str(generated.resolve()), seed=study["cifar10c"]["seed"])
    write_json(manifest, outputs.manifest)


def cifar10c_root(manifest_path: str | Path) -> Path:
    """The folder of the CIFAR-10-C files named by a `prepare_cifar10c` manifest."""
    manifest_path = Path(manifest_path)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path}: CIFAR-10-C manifest not found; run prepare_cifar10c first")
    return Path(json.loads(manifest_path.read_text())["root"])


# ----------------------------------------------------------------------------- Exp 1


def source_task_data(data: ImageSplits, classes: Sequence[int]) -> ImageSplits:
    """The source task: train and val splits restricted to ``classes``, labels renumbered
    0..len(classes)-1; the test split is left empty (the source task is never tested)."""
    classes = [int(c) for c in classes]
    if len(set(classes)) < 2 or any(not 0 <= c < data.num_classes for c in classes):
        raise ValueError(f"source_task.classes must be >= 2 distinct labels in 0..{data.num_classes - 1}, "
                         f"got {classes}")
    lookup = torch.full((data.num_classes,), -1, dtype=torch.int64)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))

    def subset(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keep = lookup[y] >= 0
        return x[keep], lookup[y[keep]]

    train_x, train_y = subset(data.train_x, data.train_y)
    val_x, val_y = subset(data.val_x, data.val_y)
    return ImageSplits(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                       test_x=data.test_x[:0], test_y=data.test_y[:0],
                       classes=tuple(data.classes[c] for c in classes), mean=data.mean, std=data.std)


def pretrain(config: dict, job: dict, inputs, outputs) -> None:
    """Pretrain the model ``job["model"]`` at ``job["seed"]`` on the source task; writes its best
    state_dict (``outputs.model``: a plain model, loadable as ``pretrained_file``) and the history."""
    model_id, seed = job["model"], int(job["seed"])
    source = _study(config)["source_task"]
    data = source_task_data(study_data(config), source["classes"])
    model = build_model(config, model_id, data.num_classes, data.image_size, seed)
    result = train_classifier(model, data, _settings(source["training"], seed), checkpoint_dir(outputs.model),
                              device=resolve_device(config["device"]))
    model.load_state_dict(result.best_state)
    atomic_torch_save(_unwrapped(model).state_dict(), outputs.model)
    write_csv(result.history.assign(model=model_id, seed=seed, stage="source_task"), outputs.history)


def train(config: dict, run: dict, inputs, outputs) -> None:
    """Exp 1 for one run: train (best epoch by val top-1), write the best weights, the
    per-epoch history and one row of val/test metrics of the best epoch. A pretrained run of
    a source-task model starts from ``inputs.pretrained``."""
    data = study_data(config)
    device = resolve_device(config["device"])
    spec = model_spec(config, run["model"])
    settings = _settings(spec["training"][run["init"]], run["seed"])
    model = _run_model(config, run, data, getattr(inputs, "pretrained", None) or None)
    result = train_classifier(model, data, settings, checkpoint_dir(outputs.model), device=device)
    model.load_state_dict(result.best_state)
    atomic_torch_save({"state": result.best_state, "best_epoch": result.best_epoch}, outputs.model)
    keys = {c: run[c] for c in RUN_COLUMNS}
    write_csv(result.history.assign(**keys), outputs.history)
    best = result.history.set_index("epoch").loc[result.best_epoch]
    logits = predict_logits(model, data.test_x, data.mean, data.std, settings.eval_batch_size, device)
    test = classification_metrics(logits, data.test_y)
    write_csv(pd.DataFrame([{**keys, "best_epoch": result.best_epoch, "val_top1": best["val_top1"],
                             "val_top5": best["val_top5"], **{f"test_{k}": test[k] for k in CELL_METRICS}}]),
              outputs.test)


# ----------------------------------------------------------------------------- Exp 2


def evaluate(config: dict, run: dict, inputs, outputs) -> None:
    """Exp 2: top-1, top-5, NLL and ECE on the clean test set (corruption ``clean``, severity 0)
    and on every corruption x severity of CIFAR-10-C."""
    data = study_data(config)
    device = resolve_device(config["device"])
    root = cifar10c_root(inputs.manifest)
    batch_size = config["architecture_study"]["eval_batch_size"]
    model = _load_trained(config, run, data, inputs.model).to(device)
    keys = {c: run[c] for c in RUN_COLUMNS}

    def cell(images: torch.Tensor, labels: torch.Tensor, corruption: str, severity: int) -> dict:
        logits = predict_logits(model, images, data.mean, data.std, batch_size, device)
        metrics = classification_metrics(logits, labels)
        return {**keys, "corruption": corruption, "severity": severity, "n_images": len(labels),
                **{k: metrics[k] for k in CELL_METRICS}}

    rows = [cell(data.test_x, data.test_y, CLEAN, 0)]
    for corruption in corruptions(config):
        for severity in SEVERITIES:
            rows.append(cell(*load_cifar10c(root, corruption, severity), corruption, severity))
    write_csv(pd.DataFrame(rows), outputs.robustness)


# ----------------------------------------------------------------------------- Exp 3


def finetune_split(n_images: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image indices (train, val, test) of the source's fine-tuning split of one corruption.

    Test: the last 10% of indices; train+val: the first 90%, split 90/10 by a seeded
    permutation. Each part is sorted.
    """
    if n_images < 10:
        raise ValueError(f"n_images must be at least 10 to split 90/10, got {n_images}")
    n_trainval = math.floor(FINETUNE_TRAINVAL_FRACTION * n_images + 1e-9)
    order = torch.randperm(n_trainval, generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = max(1, round(FINETUNE_VAL_FRACTION * n_trainval))
    return np.sort(order[n_val:]), np.sort(order[:n_val]), np.arange(n_trainval, n_images)


def _severity_blocks(root: Path, corruption: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (5, N, 3, H, W) and labels (N,) of one corruption."""
    blocks = [load_cifar10c(root, corruption, severity) for severity in SEVERITIES]
    return torch.stack([images for images, _ in blocks]), blocks[0][1]


def finetune(config: dict, run: dict, inputs, outputs) -> None:
    """Exp 3: for each corruption of the group ``run["group"]`` (see `finetune_groups`), fine-tune the Exp 1 model
    on all severities of that corruption (fresh from the Exp 1 weights each time) and evaluate
    it, and the Exp 1 model before fine-tuning, on the test images at every severity."""
    groups, group = finetune_groups(config), run["group"]
    if group not in groups:
        raise ValueError(f"group {group!r} is not a fine-tuning group; groups: {list(groups)}")
    finetune = _study(config)["finetune"]
    data = study_data(config)
    device = resolve_device(config["device"])
    root = cifar10c_root(inputs.manifest)
    spec = model_spec(config, run["model"])
    block = spec["training"][run["init"]]
    settings = _settings(block, run["seed"], epochs=finetune["epochs"], lr=block["lr"] * finetune["lr_scale"])
    keys = {c: run[c] for c in RUN_COLUMNS}
    rows = []
    for corruption in groups[group]:
        images, labels = _severity_blocks(root, corruption)
        train, val, test = finetune_split(len(labels), finetune["split_seed"])

        def rows_of(indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            index = torch.from_numpy(indices)
            return images[:, index].flatten(0, 1), labels[index].repeat(len(SEVERITIES))

        (train_x, train_y), (val_x, val_y) = rows_of(train), rows_of(val)
        split = ImageSplits(train_x=train_x, train_y=train_y, val_x=val_x, val_y=val_y,
                            test_x=val_x[:0], test_y=val_y[:0], classes=data.classes, mean=data.mean,
                            std=data.std)
        before = _load_trained(config, run, data, inputs.model)
        after = _load_trained(config, run, data, inputs.model)
        result = train_classifier(after, split, settings, checkpoint_dir(outputs.finetune) / corruption,
                                  device=device)
        after.load_state_dict(result.best_state)
        test_index = torch.from_numpy(test)
        for severity in SEVERITIES:
            test_x, test_y = images[severity - 1, test_index], labels[test_index]
            metrics = {}
            for name, model in (("before", before), ("after", after)):
                logits = predict_logits(model.to(device), test_x, data.mean, data.std,
                                        settings.eval_batch_size, device)
                metrics[name] = classification_metrics(logits, test_y)
            rows.append({**keys, "corruption": corruption, "severity": severity, "n_images": len(test_y),
                         "best_epoch": result.best_epoch,
                         **{k: metrics["after"][k] for k in CELL_METRICS},
                         **{f"{k}_before": metrics["before"][k] for k in CELL_METRICS},
                         "top1_improvement": metrics["after"]["top1"] - metrics["before"]["top1"]})
    write_csv(pd.DataFrame(rows), outputs.finetune)
