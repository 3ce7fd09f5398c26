"""Where the demo, the benchmarks and the examples find data: ``../shared``, a cache, or a download."""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def shared_dir() -> Path | None:
    """``../shared`` beside the checkout or the working folder, or ``$ONNX2SNN_SHARED``."""
    candidates = [os.environ.get("ONNX2SNN_SHARED"), Path.cwd().parent / "shared", REPO_ROOT.parent / "shared"]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "onnx2snn"


def download_cifar10(root: str | os.PathLike) -> Path:
    """Fetch CIFAR-10's python batches with torchvision's downloader (never its pickle reader)."""
    root = Path(root)
    target = root / "cifar-10-batches-py"
    if (target / "test_batch").is_file():
        return target
    try:
        from torchvision.datasets.utils import download_and_extract_archive  # optional, and slow to import
        download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)
    except Exception as error:  # network failures take many forms
        raise DataError(f"CIFAR-10 is not at {root} and downloading it failed ({type(error).__name__}: {error})") \
            from error
    return target


def cifar10_dir() -> Path:
    """The shared JPEG copy of CIFAR-10 if present, else torchvision's download into the cache."""
    shared = shared_dir()
    if shared and (shared / "data" / "cifar10").is_dir():
        return shared / "data" / "cifar10"
    try:
        return download_cifar10(cache_dir() / "cifar10")
    except DataError as error:
        raise DataError(f"no ../shared/data/cifar10 found, and {error}") from error
