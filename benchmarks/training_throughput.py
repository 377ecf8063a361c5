"""Training throughput: robustflow's tensor-resident pipeline against a DataLoader of PIL images.

Trains the embedded default's model (small_cnn, features 16/32/64, dropout 0.1) on digits
32x32 with batch 64, AdamW, random crop with padding 2, on CPU, two ways:

- tensor: what `robustflow.training` does: uint8 images in one tensor, a shuffled index
  per batch, batched crop (`augment_batch`), normalisation on the batch;
- loader: the usual torchvision recipe: a Dataset returning PIL images,
  ``RandomCrop(32, padding=2)``, ``ToTensor``, ``Normalize``, ``DataLoader(shuffle=True)``
  with ``num_workers=0`` and ``num_workers=2`` (workers start every epoch, as by default).

The pipelines take turns epoch by epoch (so background load hits all of them alike); each
prints the median images/s over the repeats and its ratio to the tensor pipeline.

    python benchmarks/training_throughput.py --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per pipeline (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training process (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # On a shared machine spinning OpenMP workers wait for busy cores; passive waiting avoids that.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms
    from torchvision.transforms.functional import to_pil_image

    from robustflow.data import load_digits
    from robustflow.data.augment import iterate_minibatches, normalize
    from robustflow.models import create_model
    from robustflow.training import TrainSettings, augment_batch, build_optimizer

    torch.set_num_threads(args.threads)
    data = load_digits(image_size=32)
    settings = TrainSettings(batch_size=64, lr=3e-3, crop_padding=2, seed=args.seed)
    loss_fn = torch.nn.CrossEntropyLoss()

    class PilDigits(Dataset):
        def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
            self.images = [to_pil_image(image) for image in images]
            self.labels = labels.tolist()
            self.transform = transform

        def __len__(self) -> int:
            return len(self.images)

        def __getitem__(self, index: int):
            return self.transform(self.images[index]), self.labels[index]

    pil_data = PilDigits(data.train_x, data.train_y, transforms.Compose([
        transforms.RandomCrop(32, padding=2), transforms.ToTensor(), transforms.Normalize(data.mean, data.std),
    ]))

    def new_model():
        torch.manual_seed(args.seed)
        model = create_model("small_cnn", num_classes=data.num_classes, img_size=32, features=(16, 32, 64),
                             dropout=0.1).train()
        return model, build_optimizer(model, settings)

    def step(model, optimizer, images, labels):
        loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    generator = torch.Generator().manual_seed(args.seed)

    def tensor_epoch(model, optimizer) -> int:
        for indices in iterate_minibatches(len(data.train_x), settings.batch_size, generator):
            images, labels, _, _ = augment_batch(data.train_x[indices], data.train_y[indices], settings, generator)
            step(model, optimizer, normalize(images, data.mean, data.std), labels)
        return len(data.train_x)

    def loader_epoch(workers: int):
        def run(model, optimizer) -> int:
            loader = DataLoader(pil_data, batch_size=settings.batch_size, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(args.seed))
            for images, labels in loader:
                step(model, optimizer, images, labels)
            return len(pil_data)
        return run

    pipelines = {
        "tensor-resident (robustflow)": tensor_epoch,
        "DataLoader+PIL, num_workers=0": loader_epoch(0),
        "DataLoader+PIL, num_workers=2": loader_epoch(2),
    }
    models = {name: new_model() for name in pipelines}
    for name, run in pipelines.items():
        run(*models[name])  # warm-up epoch: allocator, kernels, first worker start
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(args.repeats):
        for name, run in pipelines.items():
            start = time.perf_counter()
            images = run(*models[name])
            rates[name].append(images / (time.perf_counter() - start))

    print(f"small_cnn 16/32/64 on digits 32x32, batch {settings.batch_size}, {len(data.train_x)} images/epoch, "
          f"{args.threads} torch thread(s), {os.cpu_count()} CPU(s) visible, median of {args.repeats} epochs")
    tensor_rate = statistics.median(rates["tensor-resident (robustflow)"])
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"{name:32s} {rate:8.0f} images/s   tensor-resident / this = {tensor_rate / rate:5.2f}x")


if __name__ == "__main__":
    main()
