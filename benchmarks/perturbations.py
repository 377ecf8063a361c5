"""Speed of the batched CIFAR-10-P sequence generator against the per-image reference path.

For N CIFAR-sized images, generates every perturbation's frames with
``robustflow.perturbations.perturbation_sequence`` (one call per perturbation on the whole
batch) and with ``robustflow.perturbations.reference`` (``make_cifar_p.py``'s per-image
Pillow / NumPy / OpenCV / scikit-image code, one call per image), side by side in one run,
and prints images per second for both (the fastest of ``--repeats`` runs) and their ratio, per
perturbation and overall.

    python benchmarks/perturbations.py --n 200 --threads 2
    python benchmarks/perturbations.py --n 500 --device cuda --repeats 1   # the engine on a GPU, the reference on the CPU
"""

from __future__ import annotations

import argparse
import os
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="number of 32x32 images (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both sides (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side; the fastest counts (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturbations", nargs="+", default=None, help="a subset (default: all 14)")
    parser.add_argument("--device", default="cpu", help="where the engine runs (default cpu); the reference runs on the CPU")
    args = parser.parse_args(argv)
    if min(args.n, args.threads, args.repeats) < 1:
        parser.error("--n, --threads and --repeats must be positive")
    return args


def natural_images(n: int, seed: int):
    """uint8 (N, 3, 32, 32): upsampled digits in a colour over smooth colour backgrounds."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits().images
    strokes = torch.tensor(digits[rng.integers(0, len(digits), n)] / 16.0)[:, None]
    strokes = F.interpolate(strokes, size=(32, 32), mode="bilinear", align_corners=False)
    background = F.interpolate(
        torch.tensor(rng.uniform(0.1, 0.9, (n, 3, 4, 4))), size=(32, 32), mode="bicubic", align_corners=False
    ).clamp(0, 1)
    ink = torch.tensor(rng.uniform(0.0, 1.0, (n, 3, 1, 1)))
    return ((background * (1 - 0.85 * strokes) + ink * 0.85 * strokes) * 255).round().to(torch.uint8)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    # Thread pools read these when the libraries load, so set them before importing.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    # On a shared machine, spinning OpenMP workers wait for cores held by other processes.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import cv2
    import numpy as np
    import torch

    from robustflow.perturbations import PERTURBATIONS, perturbation_sequence
    from robustflow.perturbations.reference import REFERENCE_FUNCTIONS

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but torch sees no CUDA device; use --device cpu")
    names = args.perturbations or list(PERTURBATIONS)
    unknown = sorted(set(names) - set(PERTURBATIONS))
    if unknown:
        raise SystemExit(f"unknown perturbations {unknown}; valid: {', '.join(PERTURBATIONS)}")

    images = natural_images(args.n, args.seed)
    per_image = [image.permute(1, 2, 0).numpy() for image in images]
    images = images.to(device)
    def generator(seed: int) -> torch.Generator:  # on the engine's device, as write_cifar10p draws
        return torch.Generator(device=device).manual_seed(seed)

    for name in names:  # warm-up: cached grids and filter matrices, CUDA kernels
        perturbation_sequence(images[:2], name, generator(0))
        REFERENCE_FUNCTIONS[name](per_image[0], np.random.default_rng(0))

    engine_on = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} threads"
    print(f"{args.n} images of 32x32, engine on {engine_on}, reference on {args.threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'perturbation':<16}{'engine img/s':>14}{'reference img/s':>17}{'ratio':>8}")
    def engine_run(name: str) -> None:
        # .cpu() waits for the device: frames are written from host memory
        perturbation_sequence(images, name, generator(args.seed)).cpu()

    def reference_run(name: str) -> None:
        rng = np.random.default_rng(args.seed)
        for image in per_image:
            REFERENCE_FUNCTIONS[name](image, rng)

    rows = []
    for name in names:
        # The fastest of a few runs: a run's speed depends on what the allocator holds from the
        # runs before it (the first run after a different perturbation can be 2x slower).
        engine = min(_seconds(engine_run, name) for _ in range(args.repeats))
        reference = min(_seconds(reference_run, name) for _ in range(args.repeats))
        rows.append({"perturbation": name, "engine_s": engine, "reference_s": reference})
        print(f"{name:<16}{args.n / engine:>14.0f}{args.n / reference:>17.0f}{reference / engine:>8.1f}")
    engine_total = sum(row["engine_s"] for row in rows)
    reference_total = sum(row["reference_s"] for row in rows)
    # overall: images through every perturbation listed, per second of total time
    print(
        f"{f'all {len(rows)}':<16}{args.n / engine_total:>14.1f}{args.n / reference_total:>17.1f}"
        f"{reference_total / engine_total:>8.1f}"
    )
    return rows


def _seconds(run, name: str) -> float:
    start = time.perf_counter()
    run(name)
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
