"""Hostile and broken inputs, one builder each, shared by tests/test_hostile_inputs.py and by
scripts/robustness_table.py (which writes the table in docs/robustness.md).

A case builds its files under a folder and returns the ``onnx2snn convert`` arguments that
feed them to the CLI; ``expect`` is a fragment the one-line error must contain.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from helpers import make_model, small_cnn, tensor

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models run fastest on one thread; on a busy machine more threads cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_image_folder(root: Path, classes: int = 10, per_class: int = 3, size: int = 8, seed: int = 0,
                      test_per_class: int | None = None) -> Path:
    """A CIFAR-style image-folder data set of noise: root/{train,test}/class_k/img_i.png."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        count = per_class if split == "train" or test_per_class is None else test_per_class
        for k in range(classes):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img_{i}.png")
    return root


def cnn() -> onnx.ModelProto:
    return small_cnn(np.random.default_rng(0))


def _write(folder: Path, model: onnx.ModelProto | bytes, name: str = "model.onnx") -> Path:
    path = folder / name
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(init for init in model.graph.initializer if init.name == name)


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(node for node in model.graph.node if node.name == name)


def _replace_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> onnx.ModelProto:
    _initializer(model, name).CopyFrom(numpy_helper.from_array(value, name))
    return model


def _external(folder: Path, location: str, make_file: bool = False) -> Path:
    """The first conv weight stored as external data at ``location``."""
    model = cnn()
    weight = _initializer(model, "w1")
    raw = numpy_helper.to_array(weight).tobytes()
    if make_file:
        (folder / location).write_bytes(raw)
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return _write(folder, model)


def _symlink_out(folder: Path) -> Path:
    outside = folder.parent / f"{folder.name}_secret.bin"
    outside.write_bytes(numpy_helper.to_array(_initializer(cnn(), "w1")).tobytes())
    os.symlink(outside, folder / "weights.bin")
    return _external(folder, "weights.bin")


def _cycle(folder: Path) -> Path:
    model = cnn()
    _node(model, "relu1").input[0] = "r2"  # relu1 -> pool1 -> conv2 -> relu2 -> relu1
    return _write(folder, model)


def _dangling(folder: Path) -> Path:
    model = cnn()
    _node(model, "pool1").input[0] = "ghost"
    return _write(folder, model)


def _missing_initializer(folder: Path) -> Path:
    model = cnn()
    model.graph.initializer.remove(_initializer(model, "w2"))
    return _write(folder, model)


def _duplicate_output(folder: Path) -> Path:
    model = cnn()
    _node(model, "conv2").output[0] = "p1"
    return _write(folder, model)


def _duplicate_initializer(folder: Path) -> Path:
    model = cnn()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(8, np.float32), "b1"))
    return _write(folder, model)


def _no_relu(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1, name="fc")]
    init = {"w": rng.normal(0, 0.1, (10, 192)).astype(np.float32), "b": np.zeros(10, np.float32)}
    return _write(folder, make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init))


def _output_4d(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    init = {"w": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)}
    return _write(folder, make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4, 8, 8])], init))


def _output_4d_undeclared(folder: Path) -> Path:
    """The declared output claims 2-D but the graph computes 4-D: only running it tells."""
    model = onnx.load_from_string(_output_4d(folder).read_bytes())
    shape = model.graph.output[0].type.tensor_type.shape
    del shape.dim[2:]
    return _write(folder, model)


def _zero_dim_input(folder: Path) -> Path:
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 0
    return _write(folder, model)


def _negative_dim(folder: Path) -> Path:
    model = cnn()
    weight = _initializer(model, "b1")
    weight.dims[0] = -8
    return _write(folder, model)


def _absurd_initializer(folder: Path) -> Path:
    model = cnn()
    weight = _initializer(model, "w2")
    del weight.dims[:]
    weight.dims.extend([100000, 100000, 3, 3])  # 360 GB as float32; the file holds 2 KB
    return _write(folder, model)


def _absurd_activations(folder: Path) -> Path:
    """A legal 1x1 conv to 60000 channels: 15 MB of activations per 8x8 image."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="wide"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1, name="fc")]
    init = {"w": rng.normal(0, 0.1, (60000, 3, 1, 1)).astype(np.float32),
            "wf": rng.normal(0, 0.01, (10, 60000)).astype(np.float32)}
    return _write(folder, make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init))


def _channel_mismatch(folder: Path) -> Path:
    """Shape inference lets this through; the one-image trial run does not."""
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "C"
    return _write(folder, _replace_initializer(model, "w2", np.ones((8, 5, 3, 3), np.float32)))


def _input_shape_mismatch(folder: Path) -> Path:
    model = cnn()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 32
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 32
    return _write(folder, model)


@dataclasses.dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    expect: str
    error: str  # the Onnx2SnnError subclass
    extra: tuple[str, ...] = ()


CASES = [
    Case("garbage bytes", lambda d: _write(d, bytes(range(256)) * 8), "not an ONNX model", "InvalidModelError"),
    Case("empty file", lambda d: _write(d, b""), "not an ONNX model", "InvalidModelError"),
    Case("truncated model", lambda d: _write(d, cnn().SerializeToString()[:700]), "not an ONNX model",
         "InvalidModelError"),
    Case("a TensorProto, not a model", lambda d: _write(d, _initializer(cnn(), "w1").SerializeToString()),
         "TensorProto", "InvalidModelError"),
    Case("a GraphProto, not a model", lambda d: _write(d, cnn().graph.SerializeToString()), "GraphProto",
         "InvalidModelError"),
    Case("missing file", lambda d: d / "nowhere.onnx", "no such file", "InvalidModelError"),
    Case("cycle", _cycle, "cycle", "InvalidModelError"),
    Case("dangling input", _dangling, "dangling input", "InvalidModelError"),
    Case("missing initializer", _missing_initializer, "missing initializer", "InvalidModelError"),
    Case("duplicate node output", _duplicate_output, "duplicate name 'p1'", "InvalidModelError"),
    Case("duplicate initializer", _duplicate_initializer, "duplicate name 'b1'", "InvalidModelError"),
    Case("external data file missing", lambda d: _external(d, "weights.bin"), "is missing", "InvalidModelError"),
    Case("external data at ../", lambda d: _external(d, "../weights.bin"), "outside the model's folder",
         "InvalidModelError"),
    Case("external data at an absolute path", lambda d: _external(d, "/etc/passwd"), "outside the model's folder",
         "InvalidModelError"),
    Case("external data through a symlink out of the folder", _symlink_out, "outside the model's folder",
         "InvalidModelError"),
    Case("float64 conv weights", lambda d: _write(d, _replace_initializer(cnn(), "w1", np.ones((8, 3, 3, 3)))),
         "float64", "InvalidModelError"),
    Case("int32 conv weights", lambda d: _write(d, _replace_initializer(
        cnn(), "w1", np.ones((8, 3, 3, 3), np.int32))), "weights must be float32 or float16", "InvalidModelError"),
    Case("NaN in weights", lambda d: _write(d, _replace_initializer(
        cnn(), "b2", np.array([0, 1, np.nan, 0, 0, 0, 0, 0], np.float32))), "NaN", "InvalidModelError"),
    Case("Inf in weights", lambda d: _write(d, _replace_initializer(
        cnn(), "wf", np.full((10, 8), np.inf, np.float32))), "Inf", "InvalidModelError"),
    Case("zero dimension in the input", _zero_dim_input, "zero or negative dimension", "InvalidModelError"),
    Case("negative dimension in a weight", _negative_dim, "negative dimension", "InvalidModelError"),
    Case("initializer shape needing 360 GB", _absurd_initializer, "over the", "ResourceError"),
    Case("activations over --max-memory", _absurd_activations, "over the memory budget", "ResourceError",
         ("--max-memory", "8MB")),
    Case("no ReLU", _no_relu, "no ReLU", "InvalidModelError"),
    Case("4-D output", _output_4d, "2-D logits", "InvalidModelError"),
    Case("4-D output declared as 2-D", _output_4d_undeclared, "2-D logits", "InvalidModelError"),
    Case("conv channels that do not match", _channel_mismatch, "fails on one input image", "InvalidModelError"),
    Case("model input 32x32, data 8x8", _input_shape_mismatch, "but the data's images are", "ConfigError"),
    Case("unparseable --max-memory", lambda d: _write(d, cnn()), "--max-memory", "ConfigError",
         ("--max-memory", "lots")),
]
