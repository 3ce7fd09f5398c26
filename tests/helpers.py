"""Builders for small ONNX models used across the tests."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes: Sequence[onnx.NodeProto], inputs: Sequence[onnx.ValueInfoProto],
               outputs: Sequence[onnx.ValueInfoProto], initializers: dict[str, np.ndarray] | None = None,
               opset: int = 13, name: str = "test") -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()]
    graph = helper.make_graph(list(nodes), name, list(inputs), list(outputs), initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tensor(name: str, shape: Sequence) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def run_onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def small_cnn(rng: np.random.Generator, batchnorm: bool = False, opset: int = 13) -> onnx.ModelProto:
    """Conv(-BN)-ReLU-AvgPool-Conv-ReLU-GlobalAvgPool-Flatten-Gemm on [N, 3, 8, 8]."""
    init = {
        "w1": rng.normal(0, 0.4, (8, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 8).astype(np.float32),
        "wf": rng.normal(0, 0.5, (10, 8)).astype(np.float32),
        "bf": rng.normal(0, 0.1, 10).astype(np.float32),
    }
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1")]
    first = "c1"
    if batchnorm:
        init.update({"g": rng.uniform(0.5, 1.5, 8).astype(np.float32), "be": rng.normal(0, 0.2, 8).astype(np.float32),
                     "m": rng.normal(0, 0.2, 8).astype(np.float32), "v": rng.uniform(0.5, 2, 8).astype(np.float32)})
        nodes.append(helper.make_node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn1"], name="bn1"))
        first = "bn1"
    nodes += [
        helper.make_node("Relu", [first], ["r1"], name="relu1"),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g2"], name="gap"),
        helper.make_node("Flatten", ["g2"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc"),
    ]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init, opset=opset)


def nhwc_input(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` as tf2onnx writes a Keras model: it takes ``[N, H, W, C]`` and transposes it to NCHW
    (Transpose perm 0,3,1,2) in front of the first layer."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    value = graph.input[0]
    dims = [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
    name = value.name
    graph.input.remove(value)
    graph.input.insert(0, helper.make_tensor_value_info(f"{name}_nhwc", value.type.tensor_type.elem_type,
                                                        [dims[0], dims[2], dims[3], dims[1]]))
    graph.node.insert(0, helper.make_node("Transpose", [f"{name}_nhwc"], [name], perm=[0, 3, 1, 2],
                                          name="input_nhwc_to_nchw"))
    onnx.checker.check_model(model)
    return model
