"""Where the public datasets' files lie on disk, for presence checks that import no torch.

Config validation runs before the DAG is built, so it must stay light; the loaders in
`robustflow.data` read the same names (and check the md5 sums when they load the data).
"""

from __future__ import annotations

import pickle
from pathlib import Path

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_BINARY_FOLDER = "cifar-10-batches-bin"  # the C version of the release, which the loader does not read

BG_CHALLENGE_VARIATIONS = ("original", "only_fg", "only_bg_b", "only_bg_t", "no_fg", "mixed_same", "mixed_rand",
                           "mixed_next")
BG_CHALLENGE_HOW_TO_GET = (
    "Download `backgrounds_challenge_data.tar.gz` from the release of github.com/MadryLab/backgrounds_challenge "
    "(the val sets of every variation and fg_mask) and the IN-9 training set `original.tar.gz` linked in its "
    "README (for original/train), unpack both into one bg_challenge folder and set its path as root."
)


def cifar10_missing_files(root: str | Path) -> list[Path]:
    """Paths of the CIFAR-10 files absent under ``root`` (empty when all are present)."""
    folder = Path(root) / CIFAR10_FOLDER
    return [folder / name for name in CIFAR10_FILES if not (folder / name).is_file()]


def cifar10_empty_files(root: str | Path) -> list[Path]:
    """The CIFAR-10 files under ``root`` that are empty (an interrupted download or copy)."""
    folder = Path(root) / CIFAR10_FOLDER
    return [folder / name for name in CIFAR10_FILES if (folder / name).is_file() and not (folder / name).stat().st_size]


def cifar10_layout_hint(root: str | Path) -> str | None:
    """How to fix a CIFAR-10 root that lacks the batches folder but shows a known mistake, else None."""
    root = Path(root)
    if root.name == CIFAR10_FOLDER or (root / "data_batch_1").is_file():
        return (f"datasets.cifar10.root points at the batches folder itself; the root is the folder that holds "
                f"{CIFAR10_FOLDER}/: set datasets.cifar10.root to {root.parent}")
    if (root / CIFAR10_ARCHIVE).is_file():
        return (f"{root / CIFAR10_ARCHIVE} is the downloaded archive, not yet extracted: extract it there "
                f"(tar -xzf {root / CIFAR10_ARCHIVE} -C {root}) so that {root / CIFAR10_FOLDER} exists")
    if (root / CIFAR10_BINARY_FOLDER).is_dir():
        return (f"{root / CIFAR10_BINARY_FOLDER} is the binary version of CIFAR-10; the pipeline reads the python "
                f"version: download {CIFAR10_URL} ({CIFAR10_ARCHIVE}) and extract it into {root}")
    return None

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CIFAR10C_LABELS = "labels.npy"
CIFAR10C_HOW_TO_GET = (
    "CIFAR-10-C is the release at https://zenodo.org/record/2535967 (CIFAR-10-C.tar): <corruption>.npy "
    "uint8 (50000, 32, 32, 3) and labels.npy (50000,), the 10000 test images at severities 1..5."
)


def image_class_folders(root: str | Path) -> list[Path]:
    """The class folders of an image-folder dataset (sorted, hidden ones skipped)."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def holds_images(folder: Path) -> bool:
    return any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


class UnreadableNpy(ValueError):
    """A file is not a complete .npy array (truncated, pickled, or not numpy at all)."""


def npy_shape(path: Path) -> tuple[tuple[int, ...], str]:
    """Shape and dtype of an .npy file from its header (memory-mapped: no data is read).

    A file that is not a complete .npy array (a truncated download, an HTML error page, a
    pickle) raises `UnreadableNpy` naming it.
    """
    import numpy as np

    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise UnreadableNpy(f"{path}: not a readable .npy array ({error})") from error
    return tuple(array.shape), str(array.dtype)


def cifar10c_problems(root: Path, corruptions: list[str], image_size: int) -> list[str]:
    """Layout problems of an official CIFAR-10-C folder, from the .npy headers alone."""
    labels = root / CIFAR10C_LABELS
    if not labels.is_file():
        return [f"{labels} does not exist. {CIFAR10C_HOW_TO_GET}"]
    try:
        shape, dtype = npy_shape(labels)
    except UnreadableNpy as error:
        return [f"{error}. {CIFAR10C_HOW_TO_GET}"]
    if len(shape) != 1 or "int" not in dtype or not shape[0] or shape[0] % 5:
        return [f"{labels}: expected a 1-D integer array of 5 x N labels, got shape {shape} {dtype}"]
    n_rows = shape[0]
    problems = []
    for name in corruptions:
        problem, _ = _uint8_array_problem(root / f"{name}.npy", (n_rows, image_size, image_size, 3),
                                          f"the labels' count, the study's {image_size}x{image_size} test images",
                                          CIFAR10C_HOW_TO_GET)
        problems += problem
    return problems


def _uint8_array_problem(path: Path, expected: tuple, what: str, how_to_get: str) -> tuple[list[str], tuple]:
    """([problem] or [], the file's shape): ``path`` must be a uint8 .npy array of shape ``expected``
    (a leading None takes the file's own count)."""
    if not path.is_file():
        return [f"{path} does not exist. {how_to_get}"], ()
    try:
        shape, dtype = npy_shape(path)
    except UnreadableNpy as error:
        return [f"{error}. {how_to_get}"], ()
    if expected[0] is None and shape:
        expected = (shape[0], *expected[1:])
    if shape != expected or dtype != "uint8":
        return [f"{path}: shape {shape} {dtype}, expected {expected} uint8 ({what})"], shape
    return [], shape

# CIFAR-10-P: frames per sequence (robustflow.perturbations.FRAMES holds the same; a test checks).
CIFAR10P_FRAMES = {"gaussian_noise": 31, "shot_noise": 31, "speckle_noise": 31, "motion_blur": 21,
                   "zoom_blur": 31, "spatter": 31, "snow": 31, "brightness": 31, "translate": 16,
                   "rotate": 31, "tilt": 31, "scale": 31, "gaussian_blur": 31, "shear": 31}
CIFAR10P_HOW_TO_GET = ("CIFAR-10-P is CIFAR-10-P.tar in Zenodo record 2535967 (beside CIFAR-10-C): "
                       "<perturbation>.npy uint8 (10000, T, 32, 32, 3), test-set order.")


def cifar10p_problems(root: Path, names: list[str], n_images: int | None = None) -> list[str]:
    """Layout problems of an official CIFAR-10-P folder, from the .npy headers alone: every file
    uint8 (N, T, 32, 32, 3) with the perturbation's T and one N for all, ``n_images`` (one
    sequence per test image) when given."""
    if not root.is_dir():
        return [f"{root} does not exist. {CIFAR10P_HOW_TO_GET} Or set the root to null to generate the set."]
    problems = []
    for name in names:
        what = f"one sequence of {CIFAR10P_FRAMES[name]} frames per test image" if n_images else (
            f"N sequences of {CIFAR10P_FRAMES[name]} frames, N as in the other files")
        problem, shape = _uint8_array_problem(root / f"{name}.npy", (n_images, CIFAR10P_FRAMES[name], 32, 32, 3),
                                              what, CIFAR10P_HOW_TO_GET)
        problems += problem
        n_images = shape[0] if n_images is None and shape else n_images
    return problems


def cifar10_test_size(root: str | Path) -> int | None:
    """How many images CIFAR-10's test batch under ``root`` holds (None when it cannot be read)."""
    path = Path(root) / CIFAR10_FOLDER / "test_batch"
    try:
        with open(path, "rb") as handle:
            return len(pickle.load(handle, encoding="bytes")[b"labels"])
    except Exception:  # any unreadable batch: the dataset's own check names the file
        return None
