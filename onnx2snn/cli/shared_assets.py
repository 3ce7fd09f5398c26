"""Where the demo finds its default model and data."""
from __future__ import annotations

import os
from pathlib import Path

from ..data import download_cifar10
from ..errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def cifar10_dir() -> Path:
    """The shared JPEG copy of CIFAR-10 if present, else torchvision's download into the cache."""
    shared = shared_dir()
    if shared and (shared / "data" / "cifar10").is_dir():
        return shared / "data" / "cifar10"
    try:
        return download_cifar10(cache_dir() / "cifar10")
    except DataError as error:
        raise DataError(f"no ../shared/data/cifar10 found, and {error}") from None
