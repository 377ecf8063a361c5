"""Where the public datasets' files lie on disk, for presence checks that import no torch.

Config validation runs before the DAG is built, so it must stay light; the loaders in
`robustflow.data` read the same names (and check the md5 sums when they load the data).
"""

from __future__ import annotations

from pathlib import Path

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"

BG_CHALLENGE_HOW_TO_GET = (
    "Download `backgrounds_challenge_data.tar.gz` from the release of github.com/MadryLab/backgrounds_challenge "
    "(the val sets of every variation and fg_mask) and the IN-9 training set `original.tar.gz` linked in its "
    "README (for original/train), unpack both into one bg_challenge folder and set its path as root."
)


def cifar10_missing_files(root: str | Path) -> list[Path]:
    """Paths of the CIFAR-10 files absent under ``root`` (empty when all are present)."""
    folder = Path(root) / CIFAR10_FOLDER
    return [folder / name for name in CIFAR10_FILES if not (folder / name).is_file()]
