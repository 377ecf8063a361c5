"""Training images/s of the paper's models with and without AMP (bf16), channels_last and torch.compile.

Each variant trains the same model on synthetic uint8 images resident on the device, through the
pieces `robustflow.training` uses (`augment_batch`, `normalize`, `autocast_context`, the
optimizer of `build_optimizer`), and reports images/s after warm-up steps, plus its speed-up
over fp32. Variants take turns in rounds so clock and thermal drift hit all alike. The paper's
input sizes are the defaults: resnet50 at 32x32 and vit_small_patch16_224 at 224x224, batch 64.

    python benchmarks/model_throughput.py --device cuda            # the GPU numbers of RESULTS.md
    python benchmarks/model_throughput.py --device cpu --models small_cnn:32 --steps 3
"""

from __future__ import annotations

import argparse
import statistics
import time

VARIANTS = {
    "fp32": dict(amp=False, channels_last=False, compile=False),
    "amp": dict(amp=True, channels_last=False, compile=False),
    "amp+channels_last": dict(amp=True, channels_last=True, compile=False),
    "amp+channels_last+compile": dict(amp=True, channels_last=True, compile=True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda or cpu (default cuda)")
    parser.add_argument("--models", nargs="+", default=["resnet50:32", "vit_small_patch16_224:224"],
                        help="registry name:input size pairs (default: the paper's)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (compile happens here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if min(args.batch_size, args.steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--batch-size, --steps and --rounds must be positive, --warmup non-negative")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark; prints a table and returns its rows (model, variant, images_per_s, speedup)."""
    args = parse_args(argv)
    import torch

    from robustflow.data.augment import normalize
    from robustflow.models import create_model
    from robustflow.training import TrainSettings, augment_batch, autocast_context, build_optimizer

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device; use --device cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name_of_device = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    loss_fn = torch.nn.CrossEntropyLoss()

    def make_step(forward, optimizer, settings, images, labels, generator):
        """One training step per call, through robustflow.training's pieces, cycling over the images."""
        cursor = {"start": 0}

        def step() -> None:
            start = cursor["start"]
            cursor["start"] = (start + settings.batch_size) % (len(images) - settings.batch_size + 1)
            batch, target, _, _ = augment_batch(images[start:start + settings.batch_size],
                                                labels[start:start + settings.batch_size], settings, generator)
            if settings.channels_last and device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            with autocast_context(device, settings.amp):
                loss = loss_fn(forward(normalize(batch, mean, std)), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        return step

    rows = []
    for spec in args.models:
        model_name, size = spec.rsplit(":", 1)
        size = int(size)
        generator = torch.Generator(device=device).manual_seed(0)
        images = torch.randint(0, 256, (args.batch_size * 4, 3, size, size), dtype=torch.uint8,
                               generator=generator, device=device)
        labels = torch.randint(0, 10, (len(images),), generator=generator, device=device)
        runners = {}
        for variant in args.variants:
            flags = VARIANTS[variant]
            settings = TrainSettings(batch_size=args.batch_size, crop_padding=size // 8, flip=True, **flags)
            torch.manual_seed(0)
            model = create_model(model_name, num_classes=10, img_size=size).to(device).train()
            if settings.channels_last and device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            forward = torch.compile(model) if settings.compile else model
            runners[variant] = make_step(forward, build_optimizer(model, settings), settings, images, labels,
                                         generator)
        rates = {variant: [] for variant in runners}
        for variant, step in runners.items():
            for _ in range(args.warmup):
                step()
        for _ in range(args.rounds):
            for variant, step in runners.items():
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                _synchronize(device)
                rates[variant].append(args.steps * args.batch_size / (time.perf_counter() - start))
        base = statistics.median(rates[args.variants[0]])
        print(f"{model_name} at {size}x{size}, batch {args.batch_size}, {name_of_device}, "
              f"median of {args.rounds} rounds x {args.steps} steps")
        for variant, values in rates.items():
            rate = statistics.median(values)
            rows.append({"model": model_name, "size": size, "variant": variant, "images_per_s": rate,
                         "speedup": rate / base, "device": name_of_device})
            print(f"  {variant:28s} {rate:9.1f} images/s   {rate / base:5.2f}x {args.variants[0]}")
    return rows


def _synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
