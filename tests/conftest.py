"""Shared fixtures: paths to ../shared (tests that need it skip when it is absent) and small
model builders."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from onnx2snn.data import shared_dir

RESNET20_MEAN = (0.485, 0.456, 0.406)
RESNET20_STD = (0.229, 0.224, 0.225)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if path is None:
        pytest.skip("../shared is not present")
    return path


@pytest.fixture(scope="session")
def resnet20(shared) -> Path:
    path = shared / "models" / "resnet20_cifar10.onnx"
    if not path.is_file():
        pytest.skip("the shared ResNet-20 is not present")
    return path


@pytest.fixture(scope="session")
def cifar10(shared) -> Path:
    path = shared / "data" / "cifar10"
    if not path.is_dir():
        pytest.skip("the shared CIFAR-10 is not present")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_images(tmp_path_factory) -> Path:
    """An image-folder data set: {train,test}/class_k/*.png, 10 classes x 4 images of 8x8 RGB."""
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_images")
    generator = np.random.default_rng(7)
    for split in ("train", "test"):
        for label in range(10):
            folder = root / split / f"class_{label}"
            folder.mkdir(parents=True)
            for index in range(4):
                pixels = generator.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:04d}.png")
    return root


@pytest.fixture(scope="session")
def small_cnn_file(tmp_path_factory) -> Path:
    from helpers import small_cnn

    path = tmp_path_factory.mktemp("models") / "small_cnn.onnx"
    path.write_bytes(small_cnn(np.random.default_rng(3)).SerializeToString())
    return path
