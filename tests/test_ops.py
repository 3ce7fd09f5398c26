"""One small model per op, built with onnx.helper: the canonical graph matches onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.converter.normalize import normalize
from onnx2snn.errors import ConfigError, UnsupportedOpError
from onnx2snn.ops import NodeInfo, lookup
from onnx2snn.runtime.network import SpikingNetwork

import helpers
from helpers import run_onnxruntime, tensor

R = np.random.default_rng(7)


def w(*shape, scale=0.5):
    return R.normal(0, scale, shape).astype(np.float32)


def output(name="y"):
    """An output whose shape shape inference fills in (see ``make_model``)."""
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def make_model(nodes, inputs, outputs, initializers=None, opset=13):
    graph = helper.make_graph(list(nodes), "test", list(inputs), list(outputs), initializer=[
        numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    inferred = onnx.shape_inference.infer_shapes(model).graph.output[0]
    if len(inferred.type.tensor_type.shape.dim) != 2:  # the converter expects 2-D logits
        nodes = [*nodes[:-1], _renamed_output(nodes[-1]), helper.make_node("Flatten", ["y_raw"], ["y"])]
        return make_model(nodes, inputs, outputs, initializers, opset)
    return helpers.make_model(nodes, inputs, [inferred], initializers, opset=opset)


def _renamed_output(node):
    node = onnx.NodeProto.FromString(node.SerializeToString())
    node.output[0] = "y_raw"
    return node


def relu_after(nodes, last, out="y"):
    return list(nodes) + [helper.make_node("Relu", [last], [out], name="relu_out")]


def check(model, x, maxpool="spiking"):
    canonical = normalize(model, maxpool=maxpool)
    expected = run_onnxruntime(model, x)
    got = SpikingNetwork(canonical.model).analog(torch.from_numpy(x)).numpy()
    scale = max(np.abs(expected).max(), 1e-6)
    np.testing.assert_allclose(got / scale, expected / scale, rtol=0, atol=1e-5)
    return canonical


def conv_model(attrs, weight_shape, bias=True, x_shape=(2, 4, 9, 9), opset=13):
    init = {"w": w(*weight_shape)}
    inputs = ["x", "w"]
    if bias:
        init["b"] = w(weight_shape[0])
        inputs.append("b")
    nodes = relu_after([helper.make_node("Conv", inputs, ["c"], **attrs)], "c")
    return make_model(nodes, [tensor("x", ["N", *x_shape[1:]])], [output()], init, opset=opset), \
        R.normal(0, 1, x_shape).astype(np.float32)


CONV_CASES = {
    "bias": ({"pads": [1, 1, 1, 1]}, (6, 4, 3, 3), True),
    "no-bias": ({}, (6, 4, 3, 3), False),
    "grouped": ({"group": 2, "strides": [2, 2]}, (6, 2, 3, 3), True),
    "depthwise": ({"group": 4, "pads": [1, 1, 1, 1]}, (4, 1, 3, 3), True),
    "dilated": ({"dilations": [2, 2], "pads": [2, 1, 0, 2]}, (6, 4, 3, 3), True),
    "same-upper": ({"auto_pad": "SAME_UPPER", "strides": [2, 2]}, (6, 4, 4, 4), True),
    "same-lower": ({"auto_pad": "SAME_LOWER"}, (6, 4, 2, 2), False),
    "valid": ({"auto_pad": "VALID", "strides": [3, 2]}, (6, 4, 3, 3), True),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv(case):
    check(*conv_model(*CONV_CASES[case]))


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta", [(0, 0, 1.0, 1.0), (0, 1, 0.5, 2.0), (1, 1, 1.5, 0.5)])
def test_gemm(trans_a, trans_b, alpha, beta):
    a_shape = (5, 3) if trans_a else (3, 5)
    b_shape = (4, 5) if trans_b else (5, 4)
    nodes = relu_after([helper.make_node("Gemm", ["x", "b", "c"], ["g"], transA=trans_a, transB=trans_b,
                                         alpha=alpha, beta=beta)], "g")
    model = make_model(nodes, [tensor("x", list(a_shape))], [output()], {"b": w(*b_shape), "c": w(4)})
    check(model, R.normal(0, 1, a_shape).astype(np.float32))


def test_matmul_add_becomes_gemm():
    nodes = relu_after([helper.make_node("MatMul", ["x", "m"], ["p"]), helper.make_node("Add", ["p", "c"], ["a"])], "a")
    model = make_model(nodes, [tensor("x", ["N", 6])], [output()], {"m": w(6, 4), "c": w(4)})
    canonical = check(model, R.normal(0, 1, (3, 6)).astype(np.float32))
    assert [n.op_type for n in canonical.model.graph.node] == ["Gemm", "IF"]


def bn_init(prefix, channels):
    return {f"{prefix}_g": R.uniform(0.5, 1.5, channels).astype(np.float32),
            f"{prefix}_b": R.normal(0, 0.3, channels).astype(np.float32),
            f"{prefix}_m": R.normal(0, 0.3, channels).astype(np.float32),
            f"{prefix}_v": R.uniform(0.5, 2, channels).astype(np.float32)}


def bn(prefix, source, out):
    return helper.make_node("BatchNormalization", [source] + [f"{prefix}_{k}" for k in "gbmv"], [out], epsilon=1e-3)


def test_batchnorm_on_the_input_folds_into_the_first_conv():
    init = {"w": w(5, 3, 3, 3), **bn_init("bn", 3)}
    nodes = relu_after([bn("bn", "x", "n"), helper.make_node("Conv", ["n", "w"], ["c"], pads=[1, 1, 1, 1])], "c")
    model = make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [output()], init)
    canonical = check(model, R.normal(0, 1, (2, 3, 6, 6)).astype(np.float32))
    ops = [n.op_type for n in canonical.model.graph.node]
    assert "BatchNormalization" not in ops and "Mul" not in ops  # the shift became a border-aware bias map


def test_batchnorm_after_add_and_after_concat():
    init = {"w1": w(4, 3, 1, 1), "w2": w(4, 3, 1, 1), "w3": w(5, 8, 3, 3), **bn_init("a", 4), **bn_init("c", 8)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node("Conv", ["x", "w2"], ["c2"]),
             helper.make_node("Relu", ["c1"], ["r1"]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Add", ["r1", "r2"], ["s"]), bn("a", "s", "sb"), helper.make_node("Relu", ["sb"], ["r3"]),
             helper.make_node("Concat", ["r3", "r1"], ["cat"], axis=1), bn("c", "cat", "cb"),
             helper.make_node("Conv", ["cb", "w3"], ["c3"], pads=[1, 1, 1, 1])]
    model = make_model(relu_after(nodes, "c3"), [tensor("x", ["N", 3, 5, 5])], [output()], init)
    check(model, R.normal(0, 1, (2, 3, 5, 5)).astype(np.float32))


def test_preactivation_batchnorm_stays_in_front_of_the_neuron():
    init = {"w": w(4, 3, 3, 3), **bn_init("bn", 3)}
    nodes = [helper.make_node("Relu", ["x"], ["r0"]), bn("bn", "r0", "n"), helper.make_node("Relu", ["n"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["c"])]
    model = make_model(relu_after(nodes, "c"), [tensor("x", ["N", 3, 5, 5])], [output()], init)
    canonical = check(model, R.normal(0, 1, (2, 3, 5, 5)).astype(np.float32))
    assert [n.op_type for n in canonical.model.graph.node] == ["IF", "Mul", "Add", "IF", "Conv", "IF", "Flatten"]


@pytest.mark.parametrize("layout", ["sub-div", "mul-add", "scalar"])
def test_input_preprocessing_folds_into_the_first_layer(layout):
    mean = np.array([0.4, 0.5, 0.6], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.2, 0.25, 0.3], np.float32).reshape(3, 1, 1)
    if layout == "sub-div":
        pre = [helper.make_node("Sub", ["x", "mean"], ["p1"]), helper.make_node("Div", ["p1", "std"], ["p"])]
    elif layout == "mul-add":
        pre = [helper.make_node("Mul", ["x", "std"], ["p1"]), helper.make_node("Add", ["mean", "p1"], ["p"])]
    else:
        pre = [helper.make_node("Mul", ["x", "two"], ["p"])]
    nodes = pre + [helper.make_node("Conv", ["p", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2])]
    init = {"mean": mean, "std": std, "two": np.array(2.0, np.float32), "w": w(4, 3, 3, 3), "b": w(4)}
    model = make_model(relu_after(nodes, "c"), [tensor("x", ["N", 3, 8, 8])], [output()], init)
    canonical = check(model, R.uniform(0, 1, (2, 3, 8, 8)).astype(np.float32))
    assert canonical.model.graph.node[0].op_type == "Conv"
    assert not {"Sub", "Div", "Mul"} & {n.op_type for n in canonical.model.graph.node}


POOL_CASES = {
    "avg": ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "avg-pads": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "avg-pads-include": ("AveragePool", {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1], "count_include_pad": 1}),
    "avg-ceil": ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    "global": ("GlobalAveragePool", {}),
    "max": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "max-overlap-pads": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "max-same": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    "max-dilated-ceil": ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2], "ceil_mode": 1, "strides": [2, 2]}),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pooling(case):
    op, attrs = POOL_CASES[case]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node(op, ["r"], ["y"], **attrs)]
    model = make_model(nodes, [tensor("x", ["N", 3, 7, 7])], [output()])
    check(model, R.normal(0, 1, (2, 3, 7, 7)).astype(np.float32))


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_mean_over_h_and_w(opset):
    if opset >= 18:
        node = helper.make_node("ReduceMean", ["r", "axes"], ["y"], keepdims=0)
        init = {"axes": np.array([2, 3], np.int64)}
    else:
        node, init = helper.make_node("ReduceMean", ["r"], ["y"], axes=[2, 3], keepdims=0), {}
    model = make_model([helper.make_node("Relu", ["x"], ["r"]), node], [tensor("x", ["N", 3, 4, 4])],
                       [output()], init, opset=opset)
    check(model, R.normal(0, 1, (2, 3, 4, 4)).astype(np.float32))


def layout_model(node, init=None, x_shape=(2, 4, 6, 6), opset=13):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), node]
    model = make_model(nodes, [tensor("x", ["N", *x_shape[1:]])], [output()], init or {}, opset=opset)
    return model, R.normal(0, 1, x_shape).astype(np.float32)


LAYOUT_CASES = {
    "flatten": lambda: layout_model(helper.make_node("Flatten", ["r"], ["y"], axis=1)),
    "reshape": lambda: layout_model(helper.make_node("Reshape", ["r", "s"], ["y"]),
                                    {"s": np.array([-1, 144], np.int64)}),
    "reshape-zero": lambda: layout_model(helper.make_node("Reshape", ["r", "s"], ["y"]),
                                         {"s": np.array([0, 4, 36], np.int64)}),
    "transpose": lambda: layout_model(helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 3, 1])),
    "pad": lambda: layout_model(helper.make_node("Pad", ["r", "p"], ["y"]),
                                {"p": np.array([0, 1, 2, 0, 0, 0, 1, 3], np.int64)}),
    "slice-strided": lambda: layout_model(helper.make_node("Slice", ["r", "st", "en", "ax", "sp"], ["y"]),
                                          {"st": np.array([0, 1], np.int64), "en": np.array([2**62, 2**62], np.int64),
                                           "ax": np.array([2, 3], np.int64), "sp": np.array([2, 2], np.int64)}),
    "concat": lambda: layout_model(helper.make_node("Concat", ["r", "x"], ["y"], axis=1)),
}


@pytest.mark.parametrize("case", list(LAYOUT_CASES))
def test_layout_ops(case):
    check(*LAYOUT_CASES[case]())


def test_residual_add_of_two_spiking_paths():
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("Add", ["r1", "r2"], ["s"])]
    model = make_model(relu_after(nodes, "s"), [tensor("x", ["N", 3, 6, 6])], [output()],
                       {"w1": w(4, 3, 3, 3), "w2": w(4, 4, 3, 3)})
    check(model, R.normal(0, 1, (2, 3, 6, 6)).astype(np.float32))


@pytest.mark.parametrize("form", ["relu6-inputs", "relu6-attrs", "clip-no-max"])
def test_clip_becomes_a_capped_neuron(form):
    if form == "relu6-attrs":
        model = make_model([helper.make_node("Clip", ["x"], ["y"], min=0.0, max=6.0)], [tensor("x", ["N", 5])],
                           [output()], opset=6)
    else:
        inputs = ["x", "lo", "hi"] if form == "relu6-inputs" else ["x", "lo"]
        model = make_model([helper.make_node("Clip", inputs, ["y"])], [tensor("x", ["N", 5])], [output()],
                           {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)})
    canonical = check(model, R.normal(0, 5, (4, 5)).astype(np.float32))
    neuron = canonical.model.graph.node[0]
    assert neuron.op_type == "IF"
    clip_max = [a.f for a in neuron.attribute if a.name == "clip_max"]
    assert clip_max == ([] if form == "clip-no-max" else [6.0])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_output_softmax_is_dropped_with_a_note(op):
    nodes = [helper.make_node("Gemm", ["x", "m"], ["g"]), helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("Gemm", ["r", "m2"], ["z"]), helper.make_node(op, ["z"], ["y"], axis=1)]
    model = make_model(nodes, [tensor("x", ["N", 4])], [output()], {"m": w(4, 5), "m2": w(5, 3)})
    canonical = normalize(model)
    assert op not in {n.op_type for n in canonical.model.graph.node}
    assert any(op in note and "argmax" in note for note in canonical.notes)
    x = R.normal(0, 1, (6, 4)).astype(np.float32)
    logits = SpikingNetwork(canonical.model).analog(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(logits.argmax(1), run_onnxruntime(model, x).argmax(1))


def test_one_error_lists_every_unsupported_node():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
             helper.make_node("Tanh", ["s"], ["t"], name="squash"),
             helper.make_node("LeakyRelu", ["t"], ["l"], name="leaky"),
             helper.make_node("Relu", ["l"], ["r"], name="relu"),
             helper.make_node("Resize", ["r", "", "scales"], ["y"], name="upsample")]
    model = make_model(nodes, [tensor("x", ["N", 3, 4, 4])], [output()],
                       {"w": w(4, 3, 1, 1), "scales": np.array([1, 1, 2, 2], np.float32)})
    with pytest.raises(UnsupportedOpError) as error:
        normalize(model)
    assert error.value.nodes == [("gate", "Sigmoid", 13), ("squash", "Tanh", 13), ("leaky", "LeakyRelu", 13),
                                 ("upsample", "Resize", 13)]
    message = str(error.value)
    for text in ("'gate' (Sigmoid, opset 13)", "'upsample' (Resize, opset 13)", "Supported ops:", "Conv", "MaxPool"):
        assert text in message


def test_softmax_inside_the_network_is_unsupported():
    nodes = [helper.make_node("Softmax", ["x"], ["s"], name="attention"), helper.make_node("Relu", ["s"], ["y"])]
    model = make_model(nodes, [tensor("x", ["N", 4])], [output()])
    with pytest.raises(UnsupportedOpError, match="attention"):
        normalize(model)


def test_maxpool_can_be_replaced_by_average_pooling_on_request(caplog):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    model = make_model(nodes, [tensor("x", ["N", 2, 4, 4])], [output()])
    with caplog.at_level("WARNING", logger="onnx2snn"):
        canonical = normalize(model, maxpool="average")
    assert [n.op_type for n in canonical.model.graph.node] == ["IF", "AveragePool", "Flatten"]
    assert any("AveragePool" in note for note in canonical.notes) and "no longer computes" in caplog.text
    with pytest.raises(ConfigError, match="maxpool"):
        normalize(model, maxpool="min")


def spiking_maxpool(kernel=(2, 2)):
    cls = lookup("onnx2snn", "MaxPool", 2)
    return cls(NodeInfo("pool", "MaxPool", "onnx2snn", 2, {"kernel_shape": list(kernel)}, ["x"], ["y"], {}))


def test_spiking_maxpool_passes_the_spikes_of_the_most_active_input():
    pool = spiking_maxpool()
    # One 2x2 window. Input (0,0) fires every step from t=2; input (1,1) fires at t=1 and t=3 only.
    trains = np.zeros((5, 1, 1, 2, 2), np.float32)
    trains[1:, 0, 0, 0, 0] = 1.0
    trains[[0, 2], 0, 0, 1, 1] = 1.0
    state, out = None, []
    for step in trains:
        y, state = pool.step(state, torch.from_numpy(step))
        out.append(float(y.reshape(-1)[0]))
    # t=1: (1,1) leads. t=2: tie 1-1, the first position (0,0) leads. t=3: tie 2-2 again (0,0). Then (0,0).
    assert out == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert pool.analog(torch.from_numpy(trains.mean(0))).item() == pytest.approx(0.8)


def test_spiking_maxpool_rate_converges_to_the_max_rate():
    pool = spiking_maxpool()
    rates = torch.tensor([0.2, 0.7, 0.5, 0.1]).reshape(1, 1, 2, 2)
    generator = torch.Generator().manual_seed(0)
    state, total, steps = None, 0.0, 400
    for _ in range(steps):
        spikes = (torch.rand(rates.shape, generator=generator) < rates).float()
        y, state = pool.step(state, spikes)
        total += float(y.sum())
    assert abs(total / steps - 0.7) < 0.08
