"""Data sets and input preprocessing: the images a spiking model is calibrated and evaluated on.

``to_tensor`` turns uint8 images into the normalized float batch a model expects;
``input_normalization`` reads the mean/std a spiking file stores; ``load_images`` does both.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..dialect import METADATA
from ..errors import ConfigError
from .assets import cache_dir, cifar10_dir, download_cifar10, shared_dir
from .cifar10 import CIFAR10_CLASSES, ImageSet, balanced_order, load_split


def parse_floats(text: str | Sequence[float], what: str) -> list[float]:
    """``"0.4,0.5,0.6"`` (or a sequence) as floats, with a clear error for anything else."""
    if not isinstance(text, str):
        return [float(v) for v in text]
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise ConfigError(f"{what} must be comma-separated numbers, not {text!r}",
                          parameter=what if what.isidentifier() else None) from error


def to_tensor(images: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 NHWC images as normalized float32 NCHW: ``(x / 255 - mean) / std``."""
    channels = images.shape[-1]
    for values, what in ((mean, "mean"), (std, "std")):
        if len(values) != channels:
            raise ConfigError(f"{what} has {len(values)} values but the images have {channels} channels",
                              parameter=what)
    if any(s <= 0 for s in std):
        raise ConfigError("std values must be positive", parameter="std")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x - mean_t) / std_t).contiguous()


def input_normalization(metadata: Mapping[str, str], mean: str | Sequence[float] | None = None,
                        std: str | Sequence[float] | None = None) -> tuple[list[float], list[float]]:
    """The input mean and std: given ones win, else those the model stores (``SpikingNetwork.metadata``)."""
    mean = parse_floats(mean, "mean") if mean is not None else None
    std = parse_floats(std, "std") if std is not None else None
    mean = mean or parse_floats(metadata.get(METADATA.input_mean, ""), "the stored mean")
    std = std or parse_floats(metadata.get(METADATA.input_std, ""), "the stored std")
    if not mean or not std:
        raise ConfigError("the model stores no input normalization; give mean and std", parameter="mean")
    return mean, std


def load_images(data: str | os.PathLike, metadata: Mapping[str, str], split: str = "test",
                limit: int | None = None, mean=None, std=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, labels)``: a data set's images normalized as the model expects (its stored mean/std unless
    given), ready for ``SpikingNetwork.simulate``; ``limit`` takes a class-balanced subset."""
    mean, std = input_normalization(metadata, mean, std)
    images = load_split(data, split, limit=limit)
    return to_tensor(images.images, mean, std), torch.from_numpy(images.labels)


__all__ = ["CIFAR10_CLASSES", "ImageSet", "balanced_order", "cache_dir", "cifar10_dir", "download_cifar10",
           "input_normalization", "load_images", "load_split", "parse_floats", "shared_dir", "to_tensor"]
