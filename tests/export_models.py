"""Small hand-built spiking graphs for the export tests: every IF extension, a residual Add and a
spiking max-pool, with weights strong enough that every layer spikes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def spiking_graph(seed: int = 0, reset: str = "subtract", signed: bool = False, burst: int = 1,
                  bias: bool = True, v_init: bool = True, maxpool: bool = True) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv -> IF a -> MaxPool (or AvgPool) -> Conv -> IF b -> Conv -> Add(residual)
    -> IF c -> GlobalAveragePool -> Flatten -> Gemm -> y[N,5]. Thresholds are per channel in a and c."""
    rng = np.random.default_rng(seed)
    init = {
        "w1": rng.normal(0, 0.5, (4, 3, 3, 3)), "b1": rng.normal(0.1, 0.1, 4),
        "w2": rng.normal(0, 0.4, (4, 4, 3, 3)), "b2": rng.normal(0.1, 0.1, 4),
        "w3": rng.normal(0, 0.4, (4, 4, 3, 3)), "b3": rng.normal(0.0, 0.1, 4),
        "wf": rng.normal(0, 0.5, (5, 4)), "bf": rng.normal(0, 0.1, 5),
    }

    def neuron(name, source, channels):
        attrs = {"threshold": [float(v) for v in rng.uniform(0.5, 1.5, channels)], "reset": reset}
        if v_init:
            attrs["v_init"] = [float(v) for v in rng.uniform(0.0, 0.5, channels)]
        if bias:
            attrs["bias"] = [float(v) for v in rng.normal(0.0, 0.05, channels)]
        if signed:
            attrs["signed"] = 1
        if burst > 1:
            attrs["burst"] = burst
        return helper.make_node("IF", [source], [name], name=name, domain="onnx2snn", **attrs)

    pool = (helper.make_node("MaxPool", ["a"], ["p"], name="pool", domain="onnx2snn", kernel_shape=[2, 2],
                             strides=[2, 2])
            if maxpool else helper.make_node("AveragePool", ["a"], ["p"], name="pool", kernel_shape=[2, 2],
                                             strides=[2, 2]))
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        neuron("a", "c1", 4), pool,
        helper.make_node("Conv", ["p", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        neuron("b", "c2", 1),
        helper.make_node("Conv", ["b", "w3", "b3"], ["c3"], name="conv3", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c3", "p"], ["s"], name="residual"),
        neuron("c", "s", 4),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "spiking_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("onnx2snn", 2)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
