"""Images/s of whole training epochs of the repeatability study's paper recipe, AugMix beside
the standard objective, through the one training loop (``train_with_objective``).

The model (default WRN-40-2, the AugMix paper's) trains on generated CIFAR-sized data (random
uint8 images, 10 classes) with the ``repeatability_study.training`` block of
``config/paper.yaml`` (SGD, batch 128, cosine; bf16 autocast and channels_last on CUDA), for
``--epochs`` epochs per objective. The first epoch warms up (cuDNN autotuning, allocator); the
last one is reported: training images per second of its wall time, which includes the loop's
validation of ``--n-val`` images and its checkpoint. Each objective is one run of the loop, so
they run one after the other, not in turns: compare them on an idle device.

    python benchmarks/augmix_epoch.py --device cuda                   # the GPU row of RESULTS.md
    python benchmarks/augmix_epoch.py --device cpu --model small_cnn --n-train 256 --epochs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = ("augmix", "standard")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument("--model", default="wide_resnet40_2", help="registry name (default wide_resnet40_2)")
    parser.add_argument("--n-train", type=int, default=50_000, help="training images (default 50000, CIFAR-10's)")
    parser.add_argument("--n-val", type=int, default=1_000, help="validation images (default 1000)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per objective; the last is reported")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "paper.yaml",
                        help="config whose repeatability_study.training block is the recipe")
    args = parser.parse_args(argv)
    if min(args.n_train, args.n_val, args.epochs) < 1:
        parser.error("--n-train, --n-val and --epochs must be positive")
    return args


def generated_splits(n_train: int, n_val: int, device):
    """CIFAR-sized random images and labels (10 classes), resident on ``device``."""
    import torch

    from robustflow.data import ImageSplits

    generator = torch.Generator().manual_seed(0)

    def split(n: int):
        return (torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device),
                torch.randint(0, 10, (n,), generator=generator).to(device))

    (train_x, train_y), (val_x, val_y) = split(n_train), split(n_val)
    return ImageSplits(train_x, train_y, val_x, val_y, val_x[:0], val_y[:0], tuple(map(str, range(10))),
                       mean=(0.5, 0.5, 0.5), std=(0.29, 0.29, 0.29))


def recipe(config: Path, device, epochs: int):
    """The paper's training settings, for ``epochs``; autocast and channels_last only on CUDA."""
    import yaml

    from robustflow.training import TrainSettings

    block = yaml.safe_load(config.read_text())["repeatability_study"]["training"]
    cuda_only = {} if device.type == "cuda" else {"amp": False, "channels_last": False, "compile": False}
    return TrainSettings.from_config(block, epochs=epochs, seed=0, **cuda_only)


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; prints a table and returns its rows (objective, images_per_s, ...)."""
    args = parse_args(argv)
    import torch

    from robustflow.models import create_model
    from robustflow.objectives import build_objective
    from robustflow.training import ClassifierObjective, train_with_objective

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device; use --device cpu")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    settings = recipe(args.config, device, args.epochs)
    data = generated_splits(args.n_train, args.n_val, device)
    print(f"{args.model}, {args.n_train} train / {args.n_val} val images of 32x32, batch {settings.batch_size}, "
          f"{settings.optimizer}, amp={settings.amp}, channels_last={settings.channels_last}, {name_of_device}")
    rows = []
    for name in args.objectives:
        objective = build_objective("augmix") if name == "augmix" else ClassifierObjective()
        torch.manual_seed(0)
        model = create_model(args.model, num_classes=10, img_size=32)
        ends = [time.perf_counter()]
        with tempfile.TemporaryDirectory() as checkpoints:
            train_with_objective(model, data, settings, checkpoints, objective, device=device, progress=False,
                                 on_epoch_end=lambda epoch, record: ends.append(time.perf_counter()))
        seconds = ends[-1] - ends[-2]
        rows.append({"model": args.model, "objective": name, "epoch_s": seconds,
                     "images_per_s": args.n_train / seconds, "device": name_of_device})
        print(f"  {name:10s} last epoch {seconds:8.2f} s  {args.n_train / seconds:9.1f} train images/s")
    seconds = {row["objective"]: row["epoch_s"] for row in rows}
    if set(seconds) == set(OBJECTIVES):
        print(f"  an AugMix epoch takes {seconds['augmix'] / seconds['standard']:.2f}x a standard one")
    return rows


if __name__ == "__main__":
    main()
