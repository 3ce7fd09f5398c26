"""The two CIFAR-10 layouts and the class-balanced subset rule."""
import pickle

import numpy as np
import pytest
import torch

from onnx2snn.data import balanced_order, load_split, to_tensor
from onnx2snn.errors import ConfigError


def write_batch(path, labels, rng):
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    with open(path, "wb") as handle:
        pickle.dump({b"batch_label": b"test", b"labels": list(labels), b"data": data}, handle, protocol=2)
    return data


def test_python_batches_keep_file_order_and_limit(tmp_path, rng):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = write_batch(folder / "test_batch", [3, 1, 4, 1, 5, 9, 2, 6], rng)
    images = load_split(tmp_path, "test", limit=5)
    assert images.labels.tolist() == [3, 1, 4, 1, 5]
    # channel-major rows become HWC images
    assert images.images.shape == (5, 32, 32, 3)
    np.testing.assert_array_equal(images.images[0, :, :, 0].reshape(-1), data[0, :1024])


def test_image_folder_subset_is_round_robin(tiny_images):
    images = load_split(tiny_images, "test", limit=13)
    assert images.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert images.classes == [f"class_{i}" for i in range(10)]


def test_balanced_order_with_uneven_classes():
    order = balanced_order([["a0", "a1", "a2"], ["b0"], ["c0", "c1"]], None)
    assert order == [(0, "a0"), (1, "b0"), (2, "c0"), (0, "a1"), (2, "c1"), (0, "a2")]


def test_seeded_calibration_sample_is_deterministic_and_differs_from_file_order(tiny_images):
    first = load_split(tiny_images, "train", limit=10, seed=0)
    again = load_split(tiny_images, "train", limit=10, seed=0)
    plain = load_split(tiny_images, "train", limit=10)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, plain.images)


def test_normalization():
    images = np.full((1, 2, 2, 3), 255, dtype=np.uint8)
    x = to_tensor(images, [0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    assert x.shape == (1, 3, 2, 2)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([2.0, 1.0, 0.5]))
    with pytest.raises(ConfigError, match="std has 2 values"):
        to_tensor(images, [0.5] * 3, [1.0, 1.0])
