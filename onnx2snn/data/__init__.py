"""Data sets and input preprocessing."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .cifar10 import CIFAR10_CLASSES, ImageSet, balanced_order, load_split

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def parse_floats(text: str | Sequence[float], what: str) -> list[float]:
    """``"0.4,0.5,0.6"`` (or a sequence) as floats, with a clear error for anything else."""
    if not isinstance(text, str):
        return [float(v) for v in text]
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, not {text!r}") from None


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC images as normalized float32 NCHW: ``(x / 255 - mean) / std``."""
    channels = images.shape[-1]
    for values, what in ((mean, "--mean"), (std, "--std")):
        if len(values) != channels:
            raise ConfigError(f"{what} has {len(values)} values but the images have {channels} channels")
    if any(s <= 0 for s in std):
        raise ConfigError("--std values must be positive")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


def download_cifar10(root: str | os.PathLike) -> Path:
    """Fetch CIFAR-10's python batches with torchvision's downloader (never its pickle reader)."""
    root = Path(root)
    target = root / "cifar-10-batches-py"
    if (target / "test_batch").is_file():
        return target
    try:
        from torchvision.datasets.utils import download_and_extract_archive
        download_and_extract_archive(CIFAR10_URL, str(root), md5=CIFAR10_MD5)
    except Exception as error:  # network failures take many forms
        raise DataError(f"CIFAR-10 is not at {root} and downloading it failed ({type(error).__name__}: {error})") from None
    return target


__all__ = ["CIFAR10_CLASSES", "ImageSet", "balanced_order", "download_cifar10", "load_split", "parse_floats",
           "to_tensor"]
