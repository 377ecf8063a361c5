"""The loss study's steps (source 000): CE, label smoothing, margin (lambda sweep), focal,
combined; EMA; mixup; margin/SNR metrics per epoch; robustness under the noise suite.

Each public function is one step of the DAG, ``step(config, job, inputs, outputs)`` (see
`robustflow.studies`), so the study runs from Python as well as from Snakemake.
"""

from __future__ import annotations

import pandas as pd
import torch

from robustflow.data import ImageSplits, load_dataset
from robustflow.data.augment import to_unit_float
from robustflow.device import resolve_device
from robustflow.io import atomic_torch_save, checkpoint_dir, write_csv
from robustflow.metrics import classification_metrics, logit_margin
from robustflow.models import create_model
from robustflow.noise import apply_noise, noise_generator
from robustflow.studies.loss.plan import (
    LOSS_PARAMETERS,
    LOSS_SPECIFIC_KEYS,
    LOSSES_WITH_LAMBDA,
    RUN_COLUMNS,
)
from robustflow.training import TrainSettings, predict_logits, train_classifier


def study_data(config: dict) -> ImageSplits:
    name = config["loss_study"]["dataset"]
    return load_dataset(name, **config["datasets"][name])


def run_settings(config: dict, run: dict) -> TrainSettings:
    """The run's TrainSettings: the training block with the loss keys turned into the run's loss
    and its parameters (see the plan's `LOSS_PARAMETERS`), EMA only for EMA variants."""
    training = config["loss_study"]["training"]
    loss_params = {name: training[key] for name, key in LOSS_PARAMETERS[run["loss"]].items()}
    if run["loss"] in LOSSES_WITH_LAMBDA:
        loss_params["margin"] = run["margin_lambda"]
    block = {k: v for k, v in training.items() if k not in LOSS_SPECIFIC_KEYS}
    return TrainSettings.from_config(block, ema_decay=training["ema_decay"] if run["ema"] else None,
                                     mixup_alpha=run["mixup_alpha"], loss=run["loss"], loss_params=loss_params,
                                     seed=run["seed"])


def _build_model(config: dict, data: ImageSplits, seed: int) -> torch.nn.Module:
    spec = config["loss_study"]["model"]
    torch.manual_seed(seed)  # the seed fixes the initial weights
    return create_model(
        spec["name"],
        num_classes=data.num_classes,
        img_size=data.image_size,
        pretrained=spec["pretrained"],
        pretrained_file=spec["pretrained_file"],
        **spec["kwargs"],
    )


def train(config: dict, run: dict, inputs, outputs) -> None:
    """Train one run; writes ``outputs.model`` (best weights, raw and EMA) and ``outputs.history``.
    Checkpoints go to ``checkpoints/`` beside the model, so a rerun resumes."""
    data = study_data(config)
    model = _build_model(config, data, run["seed"])
    result = train_classifier(
        model, data, run_settings(config, run), checkpoint_dir(outputs.model),
        device=resolve_device(config["device"]),
    )
    history = result.history.assign(**{c: run[c] for c in RUN_COLUMNS})
    write_csv(history, outputs.history)
    atomic_torch_save(
        {
            "raw": result.best_state,
            "raw_epoch": result.best_epoch,
            "ema": result.ema_best_state,
            "ema_epoch": result.ema_best_epoch,
        },
        outputs.model,
    )


def evaluate(config: dict, run: dict, inputs, outputs) -> None:
    """Test-set metrics under every noise type and level, for raw and (if any) EMA weights
    (``outputs.noise``), and per-image confidence and margin on the clean set (``outputs.confidence``)."""
    data = study_data(config)
    device = resolve_device(config["device"])
    suite = config["noise_suite"]
    batch_size = config["loss_study"]["training"]["eval_batch_size"]
    weights = torch.load(inputs.model, map_location="cpu", weights_only=True)
    model = _build_model(config, data, run["seed"]).to(device)
    weight_kinds = ["raw", "ema"] if weights["ema"] is not None else ["raw"]
    clean = to_unit_float(data.test_x)
    rows, confidence = [], []
    for noise in suite["types"]:
        for level in suite["levels"]:
            # One noisy copy per (type, level), shared by every model and weight set.
            images = apply_noise(clean, noise, level, noise_generator(suite["seed"], noise, level))
            for kind in weight_kinds:
                model.load_state_dict(weights[kind])
                logits = predict_logits(model, images, data.mean, data.std, batch_size, device)
                rows.append({**run, "weights": kind, "epoch": weights[f"{kind}_epoch"], "noise": noise,
                             "level": level, **classification_metrics(logits, data.test_y)})
    for kind in weight_kinds:
        model.load_state_dict(weights[kind])
        logits = predict_logits(model, clean, data.mean, data.std, batch_size, device)
        confidence.append(pd.DataFrame({
            **{c: run[c] for c in RUN_COLUMNS},
            "weights": kind,
            "confidence": logits.softmax(1).max(1).values.numpy(),
            "margin": logit_margin(logits, data.test_y).numpy(),
            "correct": (logits.argmax(1) == data.test_y).numpy(),
        }))
    write_csv(pd.DataFrame(rows), outputs.noise)
    write_csv(pd.concat(confidence, ignore_index=True), outputs.confidence)


