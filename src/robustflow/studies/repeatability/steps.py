"""The repeatability study's steps (source 004). Each public function is one step of the DAG,
``step(config, job, inputs, outputs)`` (see `robustflow.studies`).

The sequences are the CIFAR-10-P layout of the first ``perturbations.n_images`` test images
(generated, or read from the official files); the study's CIFAR-10-C set is generated from the whole
test split with the architecture study's engine (`robustflow.data.cifar10c`). Evaluation
reads both through manifests, so every run sees the same frames.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from robustflow.corruption_names import CORRUPTIONS, SEVERITIES
from robustflow.data import ImageSplits, load_dataset
from robustflow.data.cifar10c import load_cifar10c, write_cifar10c
from robustflow.data.cifar10p import check_cifar10p, load_cifar10p, write_cifar10p
from robustflow.device import resolve_device
from robustflow.io import (
    atomic_torch_save,
    checkpoint_dir,
    write_csv,
    write_json,
)
from robustflow.metrics import classification_metrics
from robustflow.models import create_model
from robustflow.objectives import WithRotationHead, build_objective, task_state_dict
from robustflow.perturbations import (
    NOISE_PERTURBATIONS,
    crop_shift_pair,
    embed_scale_pair,
    embed_translate_pair,
    random_shift_pair,
)
from robustflow.repeatability_metrics import (
    flip_probability_per_sequence,
    shift_consistency,
    top1_change_probability,
    top5_distance_per_sequence,
    top_class_probability_change,
)
from robustflow.studies.repeatability.plan import EMBED_MARGIN, RUN_COLUMNS
from robustflow.training import (
    ClassifierObjective,
    TrainSettings,
    predict_logits,
    train_with_objective,
)

TRANSLATE = "translate"
TRANSLATE_CENTRE = 7  # the unshifted frame of the translate sequence (shifts -7..+8 px)


def _study(config: dict) -> dict:
    return config["repeatability_study"]


def study_data(config: dict) -> ImageSplits:
    name = _study(config)["dataset"]
    return load_dataset(name, **config["datasets"][name])


# ----------------------------------------------------------------------------- shared sets


def prepare_sequences(config: dict, job: dict, inputs, outputs) -> None:
    """The perturbation sequences once for every run: official files when ``perturbations.root``
    is set (checked), else generated beside the manifest; writes ``outputs.manifest``."""
    study = _study(config)
    settings = study["perturbations"]
    test_x = study_data(config).test_x
    n_images = len(test_x) if settings["n_images"] is None else min(settings["n_images"], len(test_x))
    if settings["root"] is not None:
        check_cifar10p(settings["root"], settings["names"], len(test_x))
        root, source = Path(settings["root"]), "official"
    else:
        root, source = Path(outputs.manifest).parent / "data", "generated"
        write_cifar10p(root, test_x[:n_images], settings["names"], seed=settings["seed"],
                       device=resolve_device(config["device"]))
    # Every run evaluates the first n_images sequences, of the official files too.
    write_json({"root": str(root.resolve()), "source": source, "names": list(settings["names"]),
                "n_images": n_images}, outputs.manifest)


def prepare_cifar10c(config: dict, job: dict, inputs, outputs) -> None:
    """The study's CIFAR-10-C set, generated from its test split; writes ``outputs.manifest``."""
    study = _study(config)
    data = study_data(config)
    names = list(study["cifar10c"]["corruptions"] or CORRUPTIONS)
    root = Path(outputs.manifest).parent / "data"
    write_cifar10c(root, data.test_x, data.test_y, names, seed=study["cifar10c"]["seed"],
                   device=resolve_device(config["device"]))
    write_json({"root": str(root.resolve()), "corruptions": names}, outputs.manifest)


def _manifest(path) -> dict:
    return json.loads(Path(path).read_text())


# ----------------------------------------------------------------------------- training


def _method(config: dict) -> dict:
    (method,) = _study(config)["methods"]
    return method


def _model_kwargs(config: dict) -> dict:
    """The model entry's kwargs, plus the method's blur filter when it anti-aliases the model."""
    (spec,) = _study(config)["models"]
    blur = _method(config)["blur_filter"]
    return {**spec["kwargs"], **({"blur_filter": blur} if blur else {})}


def build_model(config: dict, num_classes: int, image_size: int, seed: int) -> torch.nn.Module:
    """The run's model (seeded init), anti-aliased when its method has a blur filter, with a
    rotation head when its method trains one."""
    (spec,) = _study(config)["models"]
    method = _method(config)
    torch.manual_seed(seed)
    model = create_model(spec["name"], num_classes=num_classes, img_size=image_size, pretrained=spec["pretrained"],
                         pretrained_file=spec["pretrained_file"], **_model_kwargs(config))
    return WithRotationHead(model) if method["objective"] == "rotation_head" else model


def objective(config: dict):
    method = _method(config)
    if method["objective"] == "standard":
        return ClassifierObjective()
    return build_objective(method["objective"], **method["params"])


def train(config: dict, run: dict, inputs, outputs) -> None:
    """Train one run with its method's objective on the one resumable loop; writes the best
    weights of the task model (a rotation head is dropped) and the history."""
    data = study_data(config)
    model = build_model(config, data.num_classes, data.image_size, run["seed"])
    settings = TrainSettings.from_config(_study(config)["training"], seed=run["seed"])
    result = train_with_objective(model, data, settings, checkpoint_dir(outputs.model), objective(config),
                                  device=resolve_device(config["device"]))
    state = task_state_dict(result.best_state) if isinstance(model, WithRotationHead) else result.best_state
    atomic_torch_save({"state": state, "best_epoch": result.best_epoch}, outputs.model)
    write_csv(result.history.assign(**{c: run[c] for c in RUN_COLUMNS}), outputs.history)


def _trained(config: dict, run: dict, data: ImageSplits, model_path) -> torch.nn.Module:
    (spec,) = _study(config)["models"]
    model = create_model(spec["name"], num_classes=data.num_classes, img_size=data.image_size,
                         **_model_kwargs(config))
    model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True)["state"])
    return model.eval()


# ----------------------------------------------------------------------------- evaluation


class _Predictor:
    """Logits of a trained model for uint8 images of any batch shape (..., C, H, W)."""

    def __init__(self, model, data: ImageSplits, batch_size: int, device: torch.device) -> None:
        self.model, self.data, self.batch_size, self.device = model.to(device), data, batch_size, device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.reshape(-1, *images.shape[-3:])
        logits = predict_logits(self.model, flat, self.data.mean, self.data.std, self.batch_size, self.device)
        return logits.reshape(*images.shape[:-3], -1)


def evaluate(config: dict, run: dict, inputs, outputs) -> None:
    """Every repeatability measure of one run: flip probability and top-5 distance per
    perturbation, consistency under random shifts and the 1-px protocols, clean predictions (for
    the agreement across seeds), the top-class probability along the translate sequence, and
    top-1 on the clean test set and every CIFAR-10-C cell."""
    study = _study(config)
    data = study_data(config)
    device = resolve_device(config["device"])
    predict = _Predictor(_trained(config, run, data, inputs.model), data, study["training"]["eval_batch_size"], device)
    keys = {c: run[c] for c in RUN_COLUMNS}
    sequences = _manifest(inputs.sequences)
    perturbation_rows, translate = [], None
    for name in sequences["names"]:
        frames = load_cifar10p(sequences["root"], name, sequences["n_images"])
        logits = predict(frames)
        noise = name in NOISE_PERTURBATIONS
        perturbation_rows.append({**keys, "perturbation": name, "noise": noise, "frames": frames.shape[1],
                                  "n_images": len(frames),
                                  "flip_probability": float(flip_probability_per_sequence(logits, noise).mean()),
                                  "top5_distance": float(top5_distance_per_sequence(logits, noise).mean())})
        if name == TRANSLATE:
            translate = _translate_rows(keys, logits[: study["translate_images"]])
    write_csv(pd.DataFrame(perturbation_rows), outputs.perturbations)
    write_csv(translate if translate is not None else pd.DataFrame(columns=[*RUN_COLUMNS, "image", "frame", "shift",
                                                                         "top_class_probability"]),
              outputs.translate)
    write_csv(_shift_rows(keys, predict, data.test_x, study["shifts"]), outputs.shifts)
    clean = predict(data.test_x)
    write_csv(pd.DataFrame({**keys, "image": range(len(clean)), "label": data.test_y.numpy(),
                            "prediction": clean.argmax(1).numpy()}), outputs.predictions)
    write_csv(_corruption_rows(keys, predict, clean, data, _manifest(inputs.cifar10c)), outputs.corruptions)


def _translate_rows(keys: dict, logits: torch.Tensor) -> pd.DataFrame:
    """Per image and frame: the probability of the class the model gives the unshifted frame."""
    probabilities = logits.softmax(-1)
    top = probabilities[:, TRANSLATE_CENTRE].argmax(-1)
    chosen = probabilities.gather(2, top[:, None, None].expand(-1, probabilities.shape[1], 1))[..., 0]
    return pd.DataFrame([{**keys, "image": image, "frame": frame, "shift": frame - TRANSLATE_CENTRE,
                          "top_class_probability": float(chosen[image, frame])}
                         for image in range(len(chosen)) for frame in range(chosen.shape[1])])


def _pair_row(keys: dict, protocol: str, distance: int, logits_a: torch.Tensor, logits_b: torch.Tensor) -> dict:
    return {**keys, "protocol": protocol, "distance": distance, "n_images": len(logits_a),
            "consistency": shift_consistency(logits_a, logits_b),
            "top1_change": top1_change_probability(logits_a, logits_b),
            "top_class_probability_change": top_class_probability_change(logits_a, logits_b)}


def _shift_rows(keys: dict, predict: _Predictor, images: torch.Tensor, shifts: dict) -> pd.DataFrame:
    """Zhang's consistency for random shifts of up to 1..max_shift px, and Azulay & Weiss's
    crop-shift, embed-translate and embed-scale by 1 px (a fixed seed: every run sees the same views)."""
    generator = torch.Generator().manual_seed(shifts["seed"])
    rows = []
    for distance in range(1, shifts["max_shift"] + 1):
        pair = random_shift_pair(images, distance, generator)
        rows.append(_pair_row(keys, "random_shift", distance, predict(pair.first), predict(pair.second)))
    canvas = images.shape[-1] + EMBED_MARGIN
    protocols = {"crop_shift": crop_shift_pair(images, generator=generator),
                 "embed_translate": embed_translate_pair(images, canvas, generator),
                 "embed_scale": embed_scale_pair(images, canvas, generator)}
    for protocol, (first, second) in protocols.items():
        rows.append(_pair_row(keys, protocol, 1, predict(first), predict(second)))
    return pd.DataFrame(rows)


def _corruption_rows(keys: dict, predict: _Predictor, clean: torch.Tensor, data: ImageSplits,
                     manifest: dict) -> pd.DataFrame:
    rows = [{**keys, "corruption": "clean", "severity": 0, **_accuracy(clean, data.test_y)}]
    for corruption in manifest["corruptions"]:
        for severity in SEVERITIES:
            images, labels = load_cifar10c(manifest["root"], corruption, severity)
            rows.append({**keys, "corruption": corruption, "severity": severity,
                         **_accuracy(predict(images), labels)})
    return pd.DataFrame(rows)


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    top1 = classification_metrics(logits, labels)["top1"]
    return {"top1": top1, "error": 1.0 - top1}


# ----------------------------------------------------------------------------- aggregation


