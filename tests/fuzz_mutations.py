"""Mutations of valid models and the conversion pipeline they are fed to, shared by
tests/test_fuzz.py (hypothesis, bounded) and scripts/fuzz.py (a longer campaign).

``run_case`` returns "ok" (converted and simulated) or "typed" (an Onnx2SnnError); anything
else propagates: an uncaught exception is a bug. ``time_limit`` turns a hang into ``Hang``.
"""
from __future__ import annotations

import contextlib
import random
import signal

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.dialect import model_from_bytes
from onnx2snn.errors import Onnx2SnnError
from onnx2snn.runtime.network import SpikingNetwork

from helpers import small_cnn

OP_TYPES = ["Relu", "Conv", "Gemm", "Add", "Mul", "AveragePool", "MaxPool", "Flatten", "Reshape", "Identity",
            "GlobalAveragePool", "BatchNormalization", "Clip", "Softmax", "Concat", "Transpose", "Pad", "Sigmoid",
            "MatMul", "Dropout", "Constant", "Loop", "If", "IF"]
DTYPES = [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.INT64, TensorProto.INT8,
          TensorProto.BOOL, TensorProto.STRING, TensorProto.UNDEFINED, 99]
METHODS = ["max", "percentile:99", "spikenorm"]


class Hang(Exception):
    """A case ran past its time limit."""


@contextlib.contextmanager
def time_limit(seconds: float):
    def expire(signum, frame):
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def base_models() -> list[onnx.ModelProto]:
    return [small_cnn(np.random.default_rng(0)), small_cnn(np.random.default_rng(1), batchnorm=True),
            small_cnn(np.random.default_rng(2), opset=9)]


# -- byte-level mutations ----------------------------------------------------------------------

def flip_bytes(data: bytes, rng: random.Random) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        raw[rng.randrange(len(raw))] ^= rng.randint(1, 255)
    return bytes(raw)


def cut_or_splice(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    if rng.random() < 0.5:
        return data[:start]
    junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 32)))
    return data[:start] + junk + data[start + rng.randint(0, 16):]


def random_bytes(data: bytes, rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 600)))


# -- proto-level mutations ---------------------------------------------------------------------

def delete_node(model: onnx.ModelProto, rng: random.Random) -> None:
    del model.graph.node[rng.randrange(len(model.graph.node))]


def delete_initializer(model: onnx.ModelProto, rng: random.Random) -> None:
    if model.graph.initializer:
        del model.graph.initializer[rng.randrange(len(model.graph.initializer))]


def _random_value(rng: random.Random):
    return rng.choice([0, 1, -1, 2, 3, 7, -5, 10**6, 2**40, -(2**40)])


def perturb_attribute(model: onnx.ModelProto, rng: random.Random) -> None:
    node = rng.choice(list(model.graph.node))
    if node.attribute and rng.random() < 0.8:
        attr = rng.choice(list(node.attribute))
        if attr.type == onnx.AttributeProto.INTS:
            values = [_random_value(rng) for _ in range(rng.randint(0, 5))]
            del attr.ints[:]
            attr.ints.extend(values)
        elif attr.type == onnx.AttributeProto.INT:
            attr.i = _random_value(rng)
        elif attr.type == onnx.AttributeProto.FLOAT:
            attr.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e30])
        elif rng.random() < 0.5:
            node.attribute.remove(attr)
    else:
        name = rng.choice(["pads", "strides", "kernel_shape", "axis", "group", "dilations", "transB", "epsilon",
                           "auto_pad", "ceil_mode", "min", "max", "perm"])
        value = rng.choice([[_random_value(rng) for _ in range(rng.randint(0, 4))], _random_value(rng), 0.5,
                            "SAME_UPPER", b"VALID"])
        node.attribute.append(helper.make_attribute(name, value))


def perturb_shape(model: onnx.ModelProto, rng: random.Random) -> None:
    graph = model.graph
    if rng.random() < 0.5 and graph.initializer:
        init = rng.choice(list(graph.initializer))
        values = numpy_helper.to_array(init).reshape(-1)
        dims = [rng.choice([1, 2, 3, 8, values.size]) for _ in range(rng.randint(0, 4))]
        size = int(np.prod(dims)) if dims else 1
        new = np.resize(values, size).reshape(dims) if size < 10**6 else values
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(new), init.name))
    else:
        value = rng.choice(list(graph.input) + list(graph.output))
        shape = value.type.tensor_type.shape
        if shape.dim and rng.random() < 0.7:
            dim = rng.choice(list(shape.dim))
            dim.dim_value = rng.choice([0, 1, 2, 3, 5, 8, 32, 10**9, -3])
        elif rng.random() < 0.5:
            del shape.dim[rng.randrange(len(shape.dim)) if shape.dim else 0:]
        else:
            shape.dim.add().dim_value = rng.choice([1, 4])


def rewire(model: onnx.ModelProto, rng: random.Random) -> None:
    graph = model.graph
    names = [n for node in graph.node for n in node.output] + [i.name for i in graph.initializer] + \
        [i.name for i in graph.input] + ["", "ghost"]
    node = rng.choice(list(graph.node))
    target = node.input if node.input and rng.random() < 0.7 else node.output
    if target:
        target[rng.randrange(len(target))] = rng.choice(names)
    else:
        target.append(rng.choice(names))


def change_op(model: onnx.ModelProto, rng: random.Random) -> None:
    node = rng.choice(list(model.graph.node))
    node.op_type = rng.choice(OP_TYPES)
    if node.op_type == "IF" and rng.random() < 0.5:
        node.domain = "onnx2snn"


def change_dtype(model: onnx.ModelProto, rng: random.Random) -> None:
    if rng.random() < 0.6 and model.graph.initializer:
        init = rng.choice(list(model.graph.initializer))
        values = numpy_helper.to_array(init)
        data_type = rng.choice(DTYPES)
        try:
            new = numpy_helper.from_array(values.astype(helper.tensor_dtype_to_np_dtype(data_type)), init.name)
        except (KeyError, TypeError, ValueError):
            init.data_type = data_type  # a type that cannot hold the values: leave the bytes as they are
            return
        init.CopyFrom(new)
    else:
        value = rng.choice(list(model.graph.input) + list(model.graph.output))
        value.type.tensor_type.elem_type = rng.choice(DTYPES)


def change_opset(model: onnx.ModelProto, rng: random.Random) -> None:
    opset = model.opset_import[0]
    opset.version = rng.choice([1, 6, 7, 9, 10, 11, 13, 17, 21, 25, 99])
    if rng.random() < 0.2:
        opset.domain = rng.choice(["ai.onnx.ml", "weird"])


def add_nan(model: onnx.ModelProto, rng: random.Random) -> None:
    init = rng.choice(list(model.graph.initializer))
    values = numpy_helper.to_array(init).copy()
    if values.dtype.kind == "f" and values.size:
        values.reshape(-1)[rng.randrange(values.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e38])
        init.CopyFrom(numpy_helper.from_array(values, init.name))


BYTE_MUTATIONS = {"flip_bytes": flip_bytes, "cut_or_splice": cut_or_splice, "random_bytes": random_bytes}
PROTO_MUTATIONS = {f.__name__: f for f in (delete_node, delete_initializer, perturb_attribute, perturb_shape,
                                           rewire, change_op, change_dtype, change_opset, add_nan)}
MUTATIONS = sorted(BYTE_MUTATIONS) + sorted(PROTO_MUTATIONS)


def mutate(seed: int, kinds: list[str]) -> tuple[bytes | None, onnx.ModelProto | None]:
    """Apply ``kinds`` in order to a base model; bytes (for the file path) or a proto (for the API)."""
    rng = random.Random(seed)
    models = base_models()
    model = models[rng.randrange(len(models))]
    data = None
    for kind in kinds:
        if kind in BYTE_MUTATIONS:
            data = BYTE_MUTATIONS[kind](data if data is not None else model.SerializeToString(), rng)
        elif data is None:
            try:
                PROTO_MUTATIONS[kind](model, rng)
            except Exception:  # noqa: BLE001 - a mutation that cannot apply (e.g. no such attribute) is skipped
                continue
    return (data, None) if data is not None else (None, model)


CALIBRATION = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (4, 3, 8, 8)).astype(np.float32))


def run_case(seed: int, kinds: list[str], seconds: float = 10.0) -> str:
    """Mutate, then convert (bytes go through model_from_bytes first) and simulate a few steps."""
    data, model = mutate(seed, kinds)
    method = METHODS[seed % len(METHODS)]
    options = ConversionOptions(threshold=method, calibration_timesteps=3, batch_size=2, max_memory="256MB")
    with time_limit(seconds):
        try:
            if data is not None:
                model = model_from_bytes(data, "fuzzed model")
            conversion = convert_model(model, CALIBRATION, options)
            SpikingNetwork(conversion.model).simulate(CALIBRATION[:2], 3)
        except Onnx2SnnError:
            return "typed"
    return "ok"
