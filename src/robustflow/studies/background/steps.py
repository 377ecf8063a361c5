"""The background study's steps: source 002's Exp 4 (ImageNet-9 backgrounds) with source 003's
Robustar tools.

Models are trained on the original images (``standard``), on mixed_rand images
(``mixed_rand``, the challenge's remedy) or with Robustar's paired training (``paired``, with a
``reg_coeff``), then evaluated on every variation: top-1/top-5, the foreground share of
gradient saliency, and TracIn last-layer influence for misclassified mixed_rand images.

Two background gaps are reported, labelled: ``gap_original_minus_mixed_rand`` (source 002's
"background gap") and ``bg_gap_mixed_same_minus_mixed_rand`` (the challenge paper's BG-Gap).

Each public function is one step of the DAG, ``step(config, job, inputs, outputs)`` (see
`robustflow.studies`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from robustflow.data import ImageSplits
from robustflow.data.backgrounds import (
    BackgroundsSet,
    generate_backgrounds_set,
    load_backgrounds_set,
    load_bg_challenge,
    save_backgrounds_set,
)
from robustflow.device import resolve_device
from robustflow.influence import (
    checkpoint_tracin,
    epoch_learning_rates,
    epoch_snapshots,
    save_epoch_snapshot,
    top_influences,
)
from robustflow.io import (
    atomic_path,
    atomic_torch_save,
    checkpoint_dir,
    write_csv,
)
from robustflow.metrics import classification_metrics
from robustflow.models import create_model
from robustflow.robustar import train_paired
from robustflow.saliency import foreground_share, gradient_saliency, saliency_map
from robustflow.studies.background.plan import RUN_COLUMNS
from robustflow.training import (
    CHECKPOINT_NAME,
    TrainSettings,
    predict_logits,
    train_classifier,
)

SAMPLE_VARIATIONS = ("original", "mixed_rand", "only_bg_t")


def _study(config: dict) -> dict:
    return config["background_study"]


def _model_spec(config: dict) -> dict:
    """The one model entry a run's job config carries (see the plan's ``job_config``)."""
    (spec,) = _study(config)["models"]
    return spec


# ----------------------------------------------------------------------------- data


def generate_set(config: dict, job: dict, inputs, outputs) -> None:
    """Build the study's BackgroundsSet (generated or read from the real challenge) into ``outputs.dataset``."""
    study = _study(config)
    if study["source"] == "generated":
        dataset = generate_backgrounds_set(**study["generated"])
    elif study["source"] == "bg_challenge":
        dataset = load_bg_challenge(**study["bg_challenge"])
    else:
        raise ValueError(f"background_study.source must be 'generated' or 'bg_challenge', got {study['source']!r}")
    save_backgrounds_set(dataset, outputs.dataset)


def _training_data(dataset: BackgroundsSet, method: str) -> ImageSplits:
    if method != "mixed_rand":
        return dataset.train
    if dataset.mixed_rand_train is None:
        raise ValueError("method 'mixed_rand' needs mixed_rand training images: the generated set has them; "
                         "for the real challenge put the released Mixed-Rand training set in mixed_rand/train")
    return dataset.mixed_rand_train


def train_settings(config: dict, seed: int) -> TrainSettings:
    """TrainSettings from background_study.training (no EMA, no mixup: the study compares raw weights)."""
    return TrainSettings.from_config(_study(config)["training"], seed=seed)


def build_model(model_spec: dict, dataset: BackgroundsSet, seed: int) -> torch.nn.Module:
    """The model of ``model_spec`` ({name, kwargs, pretrained, pretrained_file}) initialised from ``seed``."""
    torch.manual_seed(seed)
    return create_model(
        model_spec["name"],
        num_classes=dataset.num_classes,
        img_size=dataset.train.image_size,
        pretrained=model_spec.get("pretrained", False),
        pretrained_file=model_spec.get("pretrained_file"),
        **model_spec.get("kwargs", {}),
    )


# ----------------------------------------------------------------------------- training


def train(config: dict, run: dict, inputs, outputs) -> None:
    """Train one run; writes the best-validation weights, the history and per-epoch snapshots (for
    TracIn) into the checkpoint folder beside the weights."""
    method, reg_coeff, pair_mode, seed = run["method"], run["reg_coeff"], run["pair_mode"], run["seed"]
    dataset = load_backgrounds_set(inputs.dataset)
    data = _training_data(dataset, method)
    settings = train_settings(config, seed)
    device = resolve_device(config["device"])
    model = build_model(_model_spec(config), dataset, seed)
    folder = checkpoint_dir(outputs.model)
    snapshot = EpochSnapshot(folder, epoch_learning_rates(settings, len(data.train_x)))
    if method == "paired":
        if reg_coeff is None or pair_mode is None:
            raise ValueError("method 'paired' needs reg_coeff and pair_mode")
        result = train_paired(model, data, dataset.train_masks, settings, folder, pair_mode=pair_mode,
                              reg_coeff=reg_coeff, device=device, on_epoch_end=snapshot)
    else:
        result = train_classifier(model, data, settings, folder, device=device, on_epoch_end=snapshot)
    history = result.history.assign(method=method, reg_coeff=reg_coeff, pair_mode=pair_mode, seed=seed,
                                    label=run["label"], variant=run["variant"])
    write_csv(history, outputs.history)
    atomic_torch_save({"state": result.best_state, "epoch": result.best_epoch, "method": method,
                       "reg_coeff": reg_coeff, "pair_mode": pair_mode, "seed": seed}, outputs.model)


class EpochSnapshot:
    """Saves each epoch's weights for TracIn, read from the checkpoint the loop has just written:
    under DDP the loop trains a copy of the model in another process, and this callable pickles."""

    def __init__(self, folder: Path, learning_rates: list[float]) -> None:
        self.folder, self.learning_rates = folder, learning_rates

    def __call__(self, epoch: int, record: dict) -> None:
        state = torch.load(self.folder / CHECKPOINT_NAME, map_location="cpu", weights_only=True)["model"]
        save_epoch_snapshot(state, self.folder, epoch, self.learning_rates[epoch - 1])


def _load_trained(model_spec: dict, dataset: BackgroundsSet, seed: int, model_path: str | Path,
                  device: torch.device) -> torch.nn.Module:
    model = build_model(model_spec, dataset, seed)
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True)["state"])
    return model.to(device).eval()


# ----------------------------------------------------------------------------- evaluation


def evaluate(config: dict, run: dict, inputs, outputs) -> None:
    """Per variation: top-1/top-5/NLL/ECE and the mean foreground share of gradient saliency (CSV);
    plus saliency of a fixed, evenly spaced sample of test images on `SAMPLE_VARIATIONS` (.npz:
    ``saliency_channels`` per channel, ``saliency`` the max over channels).

    The share uses the original image's foreground mask for every variation: all variations keep
    the foreground where it was, so on only_bg_* / no_fg it measures attention to the empty spot.
    Without masks (a release lacking fg_mask) the share is NaN.
    """
    study = _study(config)
    dataset = load_backgrounds_set(inputs.dataset)
    device = resolve_device(config["device"])
    model = _load_trained(_model_spec(config), dataset, run["seed"], inputs.model, device)
    mean, std = dataset.train.mean, dataset.train.std
    batch_size = study["training"]["eval_batch_size"]
    n_test = len(dataset.test["original"])
    sample = torch.linspace(0, n_test - 1, min(study["saliency_samples"], n_test)).round().long()
    rows, sample_images, sample_channels, sample_maps, sample_preds = [], [], [], [], []
    for variation, images in dataset.test.items():
        labels = dataset.test_labels[variation]
        logits = predict_logits(model, images, mean, std, batch_size, device)
        metrics = classification_metrics(logits, labels)
        share = math.nan
        if dataset.test_masks is not None and len(images) == len(dataset.test_masks):
            maps = saliency_map(gradient_saliency(model, images, labels, mean, std, batch_size, device))
            share = float(np.nanmean(foreground_share(maps, dataset.test_masks).numpy()))
        rows.append({**{c: run[c] for c in RUN_COLUMNS}, "variation": variation, "n": len(labels),
                     "top1": metrics["top1"], "top5": metrics["top5"], "nll": metrics["nll"],
                     "ece": metrics["ece"], "fg_share": share})
        if variation in SAMPLE_VARIATIONS:
            # Per channel for the few sampled images only: for the whole set it would triple the maps' memory.
            channels = gradient_saliency(model, images[sample], labels[sample], mean, std, batch_size, device)
            sample_images.append(images[sample].numpy())
            sample_channels.append(channels.numpy())
            sample_maps.append(saliency_map(channels).numpy())
            sample_preds.append(logits[sample].argmax(1).numpy())
    write_csv(pd.DataFrame(rows), outputs.accuracy)
    masks = dataset.test_masks[sample, 0].numpy() if dataset.test_masks is not None else np.zeros((0,))
    _write_npz(outputs.saliency, run=run["run"], label=run["label"], model=run["model"],
               variations=np.array([v for v in dataset.test if v in SAMPLE_VARIATIONS]),
               images=np.stack(sample_images), saliency=np.stack(sample_maps),
               saliency_channels=np.stack(sample_channels), predictions=np.stack(sample_preds),
               labels=dataset.test_labels["original"][sample].numpy(), masks=masks,
               classes=np.array(dataset.classes), indices=sample.numpy())


def _write_npz(path: str | Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})


# ----------------------------------------------------------------------------- influence


def influence(config: dict, run: dict, inputs, outputs) -> None:
    """TracIn (last layer, over the epoch snapshots) for the first misclassified mixed_rand test images.

    The CSV has one row per (test image, proponent/opponent rank) with labels and, for generated
    sets, background classes, so one can see whether a model's proponents share the test image's
    background rather than its label. The .npz holds the images for the influence grid.
    """
    settings = _study(config)["influence"]
    dataset = load_backgrounds_set(inputs.dataset)
    device = resolve_device(config["device"])
    mean, std = dataset.train.mean, dataset.train.std
    train = _training_data(dataset, run["method"])
    test_x, test_y = dataset.test["mixed_rand"], dataset.test_labels["mixed_rand"]
    model = _load_trained(_model_spec(config), dataset, run["seed"], inputs.model, device)
    predictions = predict_logits(model, test_x, mean, std, device=device).argmax(1)
    chosen = torch.nonzero(predictions != test_y).flatten()[: settings["n_test"]]
    k = min(settings["top_k"], len(train.train_x))
    snapshots = epoch_snapshots(checkpoint_dir(inputs.model))
    if not snapshots:
        raise FileNotFoundError(f"no epoch snapshots (epoch_*.pt) in {checkpoint_dir(inputs.model)}; run train first")
    scores = checkpoint_tracin(model, snapshots, train.train_x, train.train_y, test_x[chosen], test_y[chosen],
                               mean, std, device)
    top = top_influences(scores, k) if len(chosen) else {
        name: torch.zeros(0, k, dtype=torch.int64 if "score" not in name else torch.float64)
        for name in ("proponents", "proponent_scores", "opponents", "opponent_scores")}
    train_bg = dataset.background_classes.get("mixed_rand_train" if run["method"] == "mixed_rand" else "train")
    test_bg = dataset.background_classes.get("mixed_rand")
    rows = []
    for row, test_index in enumerate(chosen.tolist()):
        for kind in ("proponent", "opponent"):
            for rank in range(k):
                train_index = int(top[f"{kind}s"][row, rank])
                rows.append({**{c: run[c] for c in RUN_COLUMNS}, "test_index": test_index,
                             "test_label": int(test_y[test_index]), "test_prediction": int(predictions[test_index]),
                             "test_background_class": int(test_bg[test_index]) if test_bg is not None else -1,
                             "kind": kind, "rank": rank + 1, "train_index": train_index,
                             "train_label": int(train.train_y[train_index]),
                             "train_background_class": int(train_bg[train_index]) if train_bg is not None else -1,
                             "score": float(top[f"{kind}_scores"][row, rank])})
    columns = [*RUN_COLUMNS, "test_index", "test_label", "test_prediction", "test_background_class", "kind",
               "rank", "train_index", "train_label", "train_background_class", "score"]
    write_csv(pd.DataFrame(rows, columns=columns), outputs.influence)
    _write_npz(outputs.samples, run=run["run"], label=run["label"], model=run["model"],
               test_images=test_x[chosen].numpy(), test_labels=test_y[chosen].numpy(),
               test_predictions=predictions[chosen].numpy(),
               proponent_images=train.train_x[top["proponents"]].numpy() if len(chosen) else np.zeros((0, k)),
               proponent_labels=train.train_y[top["proponents"]].numpy(),
               proponent_scores=top["proponent_scores"].numpy(), classes=np.array(dataset.classes))
