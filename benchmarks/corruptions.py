"""Speed of the batched corruption engine against the per-image NumPy reference.

Generates all 19 corruptions x 5 severities for N CIFAR-sized images with
``robustflow.corruptions.corrupt`` (one call per corruption and severity on the whole batch)
and with ``imagecorruptions`` (one call per image, at the CIFAR parameters; see
``robustflow.corruptions.reference`` for the three exceptions), and prints ms per corrupted
image for both and their ratio.

    python benchmarks/corruptions.py --n 200 --threads 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=200, help="number of 32x32 images (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both sides (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1 or args.threads < 1:
        parser.error("--n and --threads must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Thread pools read these when the libraries load, so set them before importing.
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[variable] = str(args.threads)
    # On a shared machine, spinning OpenMP workers wait for cores held by other processes and
    # slow every parallel torch call many times over; passive waiting avoids that.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import cv2
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.datasets import load_digits

    from robustflow.corruptions import CORRUPTIONS, SEVERITIES, corrupt
    from robustflow.corruptions.reference import reference_functions

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)

    # Natural-looking test images: digits (upsampled) over smooth colour backgrounds.
    rng = np.random.default_rng(args.seed)
    digits = load_digits().images
    strokes = torch.tensor(digits[rng.integers(0, len(digits), args.n)] / 16.0)[:, None]
    strokes = F.interpolate(strokes, size=(32, 32), mode="bilinear", align_corners=False)
    background = F.interpolate(
        torch.tensor(rng.uniform(0.1, 0.9, (args.n, 3, 4, 4))),
        size=(32, 32),
        mode="bicubic",
        align_corners=False,
    ).clamp(0, 1)
    ink = torch.tensor(rng.uniform(0.0, 1.0, (args.n, 3, 1, 1)))
    images_u8 = ((background * (1 - 0.85 * strokes) + ink * 0.85 * strokes) * 255).round().to(torch.uint8)
    images = images_u8.float() / 255.0
    pil_images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in images_u8]
    reference = reference_functions()

    # Warm-up: caches (frost textures, resampling matrices) and Numba's JIT (glass blur).
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            corrupt(images[:4], name, severity, torch.Generator().manual_seed(0))
            reference[name](pil_images[0], severity)

    np.random.seed(args.seed)
    n_images = args.n * len(SEVERITIES)
    total_engine = total_reference = 0.0
    print(
        f"{args.n} images of 32x32, {len(SEVERITIES)} severities, {args.threads} threads, torch {torch.__version__}"
    )
    print(f"{'corruption':<20}{'engine ms/img':>15}{'reference ms/img':>18}{'ratio':>9}")
    for name in CORRUPTIONS:
        start = time.perf_counter()
        for severity in SEVERITIES:
            corrupt(images, name, severity, torch.Generator().manual_seed(args.seed + severity))
        engine = time.perf_counter() - start
        start = time.perf_counter()
        for severity in SEVERITIES:
            for image in pil_images:
                reference[name](image, severity)
        ref = time.perf_counter() - start
        total_engine += engine
        total_reference += ref
        print(
            f"{name:<20}{1000 * engine / n_images:>15.4f}{1000 * ref / n_images:>18.4f}{ref / engine:>9.1f}"
        )
    print(
        f"{'all 19 x 5':<20}{1000 * total_engine / (n_images * len(CORRUPTIONS)):>15.4f}"
        f"{1000 * total_reference / (n_images * len(CORRUPTIONS)):>18.4f}{total_reference / total_engine:>9.1f}"
    )
    print(
        "reference: imagecorruptions at the CIFAR table, except elastic_transform (its own ImageNet-C "
        "parameters and algorithm); pixelate and zoom_blur rebuilt from Pillow / its clipped_zoom",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
