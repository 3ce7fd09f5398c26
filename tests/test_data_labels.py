"""Labels travel with their images: an image-folder data set whose pixels encode their own label.

Class folders are named and created out of sorted order, and files out of name order, so reading
classes in filesystem order, pairing images with the wrong labels, or taking a ``--limit`` subset
in another order all show up. The end-to-end test runs convert and evaluate on a network that
reads the label from the pixels: ANN and SNN must score exactly 100%.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from PIL import Image

from onnx2snn.converter.convert import ConversionOptions, convert
from onnx2snn.data import load_split
from onnx2snn.evaluation import evaluate

from helpers import make_model, nhwc_input, tensor

# sorted: apple, kiwi, lemon, mango, olive, peach, plum, quince, yam, zebra
CLASS_NAMES = ["zebra", "mango", "apple", "yam", "kiwi", "plum", "lemon", "quince", "olive", "peach"]
PER_CLASS = {"train": 5, "test": 4}
SIZE = 4


def red_of(label: int) -> int:
    return 20 * label + 10


def green_of(file_index: int) -> int:
    return 30 * file_index + 5


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """{train,test}/<fruit>/<nnn>.png: red = 20 * (sorted class index) + 10, green = 30 * (sorted
    file position) + 5, blue random; folders and files written in a scrambled order."""
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(11)
    sorted_names = sorted(CLASS_NAMES)
    for split, count in PER_CLASS.items():
        for name in CLASS_NAMES:  # creation order differs from sorted order
            folder = root / split / name
            folder.mkdir(parents=True)
            for position in rng.permutation(count):
                pixels = np.zeros((SIZE, SIZE, 3), np.uint8)
                pixels[..., 0] = red_of(sorted_names.index(name))
                pixels[..., 1] = green_of(int(position))
                pixels[..., 2] = rng.integers(0, 256, (SIZE, SIZE))
                # names sort by position, but not as strings of equal length would: 9 < 10 needs the padding
                Image.fromarray(pixels).save(folder / f"img{position:03d}.png")
    return root


def test_image_folder_labels_match_their_pixels(labelled):
    images = load_split(labelled, "test")
    assert images.classes == sorted(CLASS_NAMES)
    red = images.images[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal((red - 10) // 20, images.labels)
    assert len(images) == 10 * PER_CLASS["test"]


def test_limited_subset_is_class_balanced_in_name_order(labelled):
    images = load_split(labelled, "test", limit=13)
    # round-robin over the sorted classes, each class's files in name order
    np.testing.assert_array_equal(images.labels, [i % 10 for i in range(13)])
    green = images.images[:, 0, 0, 1].astype(int)
    np.testing.assert_array_equal((green - 5) // 30, [i // 10 for i in range(13)])
    np.testing.assert_array_equal((images.images[:, 0, 0, 0].astype(int) - 10) // 20, images.labels)


def test_seeded_calibration_sample_keeps_labels_with_images(labelled):
    images = load_split(labelled, "train", limit=17, seed=3)
    np.testing.assert_array_equal((images.images[:, 0, 0, 0].astype(int) - 10) // 20, images.labels)
    assert len(set(images.labels.tolist())) == 10  # still class-balanced


def label_reader() -> onnx.ModelProto:  # noqa: F821
    """Reads u = (255 x_red - 10) / 20 (the label, with mean 0 and std 1) and outputs the logits
    -|u - k| for k = 0..9, built from ReLUs: -(relu(u - k) + relu(k - u)). The right class wins by
    a margin of 1."""
    classes = 10
    w1 = np.zeros((2 * classes, 3), np.float32)
    b1 = np.zeros(2 * classes, np.float32)
    w2 = np.zeros((classes, 2 * classes), np.float32)
    for k in range(classes):
        w1[2 * k, 0], b1[2 * k] = 255 / 20, -(0.5 + k)
        w1[2 * k + 1, 0], b1[2 * k + 1] = -255 / 20, 0.5 + k
        w2[k, 2 * k] = w2[k, 2 * k + 1] = -1.0
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], ["y"], transB=1)]
    return make_model(nodes, [tensor("x", ["N", 3, SIZE, SIZE])], [tensor("y", ["N", classes])],
                      {"w1": w1, "b1": b1, "w2": w2, "b2": np.zeros(classes, np.float32)})


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_convert_and_evaluate_score_a_label_reader_exactly(labelled, tmp_path, layout):
    """Every image is classified right by construction, so anything below 100% is a pairing,
    ordering or counting bug (in the reader, the batching, the resume logic or the accuracy).
    As a Keras/tf2onnx-style graph (NHWC input) its SNN must still match its ANN exactly."""
    ann = tmp_path / "reader.onnx"
    ann.write_bytes((label_reader() if layout == "nchw" else nhwc_input(label_reader())).SerializeToString())
    snn = tmp_path / "snn.onnx"
    convert(ann, snn, labelled, (0, 0, 0), (1, 1, 1), calibration_images=30,
            options=ConversionOptions(threshold="max"))
    result = evaluate(snn, labelled, timesteps=[64, 128], limit=27, batch_size=4, ann_path=ann,
                      checkpoint=tmp_path / "run.partial")
    assert result.n == 27
    assert result.ann_accuracy == 1.0
    assert result.snn_accuracy == {64: 1.0, 128: 1.0}
    assert result.settings["input_layout"] == layout


def test_python_batches_keep_pixels_in_place_and_labels_with_images(tmp_path):
    """CIFAR-10's python batches store each image as 1024 red, then green, then blue values, row
    by row. Pixels that encode (channel, row, column) and a label must come back in HWC order with
    their label."""
    import pickle

    n = 12
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    images = np.zeros((n, 32, 32, 3), np.uint8)
    labels = [(7 * i) % 10 for i in range(n)]
    for i, label in enumerate(labels):
        images[i, ..., 0] = rows * 4 + label  # red: the row (and the label)
        images[i, ..., 1] = cols * 4 + i % 4  # green: the column
        images[i, ..., 2] = 200 + i  # blue: which image
    data = images.transpose(0, 3, 1, 2).reshape(n, 3072)  # the file's channel-major rows
    for name in ["test_batch"] + [f"data_batch_{k}" for k in range(1, 6)]:
        with open(tmp_path / name, "wb") as handle:
            pickle.dump({b"labels": labels, b"data": data, b"filenames": []}, handle, protocol=2)
    loaded = load_split(tmp_path, "test")
    np.testing.assert_array_equal(loaded.images, images)
    np.testing.assert_array_equal(loaded.labels, labels)
    sample = load_split(tmp_path, "train", limit=7, seed=1)  # a shuffled calibration sample
    np.testing.assert_array_equal(sample.labels, [labels[b - 200] for b in sample.images[:, 0, 0, 2]])
    np.testing.assert_array_equal(sample.images, images[sample.images[:, 0, 0, 2] - 200])
