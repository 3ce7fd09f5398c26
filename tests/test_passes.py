"""Each normalizing pass on its own: the graph before and after compute the same function
(onnxruntime on both), and the pass did its rewrite."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest
import torch
from onnx import TensorProto, helper

from onnx2snn.converter import passes
from onnx2snn.converter.methods.spec import ThresholdMethod
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.thresholds import compute_thresholds
from onnx2snn.runtime.network import SpikingNetwork

from helpers import make_model, run_onnxruntime, tensor

R = np.random.default_rng(3)


def w(*shape, scale=0.5):
    return R.normal(0, scale, shape).astype(np.float32)


def apply(model: onnx.ModelProto, *steps) -> onnx.ModelProto:
    graph = gs.import_onnx(model)
    for step in steps:
        step(graph, [])
    graph.cleanup().toposort()
    return gs.export_onnx(graph, do_type_check=False)


def assert_same(before, after, x):
    expected, got = run_onnxruntime(before, x), run_onnxruntime(after, x)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(expected).max()))


def ops(model):
    return [n.op_type for n in model.graph.node]


def bn_node(source, out, channels, prefix="bn"):
    init = {f"{prefix}_g": R.uniform(0.5, 1.5, channels).astype(np.float32),
            f"{prefix}_b": w(channels), f"{prefix}_m": w(channels),
            f"{prefix}_v": R.uniform(0.5, 2, channels).astype(np.float32)}
    return helper.make_node("BatchNormalization", [source, *init], [out]), init


def test_batchnorm_to_affine_then_fold_into_producer():
    bn, init = bn_node("c", "y", 4)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["c"], group=2), bn], [tensor("x", ["N", 4, 5, 5])],
                       [tensor("y", ["N", 4, 3, 3])], {"w": w(4, 2, 3, 3), **init})
    x = R.normal(0, 1, (2, 4, 5, 5)).astype(np.float32)
    affine = apply(model, passes.batchnorm_to_affine)
    assert ops(affine) == ["Conv", "Mul", "Add"]
    assert_same(model, affine, x)
    folded = apply(affine, passes.fold_affine_into_producer)
    assert ops(folded) == ["Conv"]
    assert_same(model, folded, x)


@pytest.mark.parametrize("pads,group", [([0, 0, 0, 0], 1), ([1, 2, 0, 1], 1), ([1, 1, 1, 1], 3)])
def test_fold_affine_into_consumer_conv(pads, group):
    nodes = [helper.make_node("Sub", ["x", "mean"], ["s"]), helper.make_node("Div", ["s", "std"], ["d"]),
             helper.make_node("Conv", ["d", "w", "b"], ["y"], pads=pads, group=group, strides=[2, 1])]
    init = {"mean": w(1, 3, 1, 1), "std": R.uniform(0.2, 0.4, (3, 1, 1)).astype(np.float32),
            "w": w(6, 3 // group, 3, 3), "b": w(6)}
    model = make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 6, None, None])], init)
    folded = apply(model, passes.fold_affine_into_consumer)
    assert ops(folded)[0] == "Conv" and "Sub" not in ops(folded) and "Div" not in ops(folded)
    assert ops(folded) == (["Conv"] if not any(pads) else ["Conv", "Add"])  # padding needs a bias map
    assert_same(model, folded, R.uniform(0, 1, (2, 3, 6, 6)).astype(np.float32))


def test_fold_affine_into_consumer_gemm():
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["a"]),
             helper.make_node("Gemm", ["a", "w", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)]
    model = make_model(nodes, [tensor("x", ["N", 5])], [tensor("y", ["N", 4])],
                       {"s": w(5), "t": w(1, 5), "w": w(4, 5), "b": w(4)})
    folded = apply(model, passes.fold_affine_into_consumer)
    assert ops(folded) == ["Gemm"]
    assert_same(model, folded, R.normal(0, 1, (3, 5)).astype(np.float32))


def test_affine_with_a_non_foldable_reader_stays():
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["y"])]
    model = make_model(nodes, [tensor("x", ["N", 2, 3, 3])], [tensor("y", ["N", 2, 1, 1])],
                       {"s": w(2, 1, 1), "w": w(2, 2, 3, 3)})
    after = apply(model, passes.fold_affine_into_producer, passes.fold_affine_into_consumer)
    assert ops(after) == ["Mul", "Relu", "Conv"]


def test_cancel_transposes_and_sink_preprocessing():
    nodes = [helper.make_node("Sub", ["x", "mean"], ["s"]),
             helper.make_node("Transpose", ["s"], ["t0"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t0", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t1"], perm=[0, 2, 3, 1]),
             helper.make_node("Add", ["t1", "bias"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t2"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t2", "w2"], ["y"])]
    model = make_model(nodes, [tensor("x", ["N", 5, 5, 3])], [tensor("y", ["N", 2, 3, 3])],
                       {"mean": w(3), "w": w(4, 3, 3, 3), "bias": w(4), "w2": w(2, 4, 3, 3)})
    x = R.normal(0, 1, (2, 5, 5, 3)).astype(np.float32)
    cancelled = apply(model, passes.cancel_transposes)
    assert ops(cancelled).count("Transpose") == 1
    assert_same(model, cancelled, x)
    sunk = apply(cancelled, passes.sink_affine_through_transpose)
    assert ops(sunk)[:2] == ["Transpose", "Sub"]
    assert_same(model, sunk, x)


def test_matmul_add_to_gemm():
    nodes = [helper.make_node("MatMul", ["x", "m"], ["p"]), helper.make_node("Add", ["b", "p"], ["y"])]
    model = make_model(nodes, [tensor("x", ["N", 6])], [tensor("y", ["N", 3])], {"m": w(6, 3), "b": w(3)})
    after = apply(model, passes.matmul_add_to_gemm)
    assert ops(after) == ["Gemm"]
    assert_same(model, after, R.normal(0, 1, (4, 6)).astype(np.float32))


def dynamic_flatten_model():
    """x.view(x.size(0), -1) as TorchScript writes it with constant folding off."""
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["shape"]),
             helper.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
             helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
             helper.make_node("Reshape", ["r", "target"], ["y"])]
    return make_model(nodes, [tensor("x", ["N", 2, 3, 3])], [tensor("y", ["N", 18])],
                      {"zero": np.array(0, np.int64), "axes": np.array([0], np.int64),
                       "minus1": np.array([-1], np.int64)})


def test_resolve_dynamic_shapes_keeps_the_batch_free():
    model = dynamic_flatten_model()
    after = apply(model, passes.resolve_dynamic_shapes, passes.fold_constants)
    assert ops(after) == ["Relu", "Reshape"]
    target = [onnx.numpy_helper.to_array(i) for i in after.graph.initializer if i.name == after.graph.node[1].input[1]]
    assert target[0].tolist() == [0, -1]
    for batch in (1, 5):
        assert_same(model, after, R.normal(0, 1, (batch, 2, 3, 3)).astype(np.float32))


def test_canonical_reshape_fixed_batch_becomes_flatten():
    nodes = [helper.make_node("Reshape", ["x", "s"], ["y"]), ]
    model = make_model(nodes, [tensor("x", [2, 4, 3])], [tensor("y", [2, 12])], {"s": np.array([2, 12], np.int64)})
    after = apply(model, passes.canonical_reshapes)
    assert ops(after) == ["Flatten"]
    assert_same(model, after, R.normal(0, 1, (2, 4, 3)).astype(np.float32))


def test_drop_defaults_keep_the_function():
    nodes = [helper.make_node("Pad", ["x", "p", "v"], ["y"], mode="constant"),
             helper.make_node("Conv", ["y", "w"], ["z"], auto_pad="NOTSET", group=1)]
    model = make_model(nodes, [tensor("x", ["N", 1, 3, 3])], [tensor("z", ["N", 1, 3, 3])],
                       {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "v": np.array(0.0, np.float32),
                        "w": w(1, 1, 3, 3)})
    after = apply(model, passes.drop_default_inputs, passes.drop_default_attributes)
    assert len(after.graph.node[0].input) == 2 and not ({a.name for a in after.graph.node[1].attribute}
                                                        & {"auto_pad", "group"})
    assert_same(model, after, R.normal(0, 1, (2, 1, 3, 3)).astype(np.float32))


def test_residual_threshold_sees_the_sum_of_both_branches():
    """The neuron after a residual Add is calibrated on its actual input, conv path plus shortcut."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c2", "r1"], ["s"]), helper.make_node("Relu", ["s"], ["r2"], name="after_add"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    model = make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 4])],
                       {"w1": w(4, 3, 3, 3), "w2": w(4, 4, 3, 3, scale=0.1)})
    images = R.normal(0, 1, (6, 3, 6, 6)).astype(np.float32)
    network = SpikingNetwork(normalize(model).model)
    thresholds = compute_thresholds(network, torch.from_numpy(images), ThresholdMethod.parse("max"), timesteps=8)
    # The same maximum, computed independently with onnxruntime on the ANN's intermediates.
    probe = onnx.ModelProto.FromString(model.SerializeToString())
    probe.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r2", "c2", "r1")])
    import onnxruntime as ort

    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    _, r2, c2, r1 = session.run(None, {"x": images})
    assert thresholds["after_add"].threshold[0] == pytest.approx(r2.max(), rel=1e-5)
    # Calibrating on the conv path alone (ignoring the shortcut) would give a very different value.
    assert thresholds["after_add"].threshold[0] > 1.5 * np.maximum(c2, 0).max()
