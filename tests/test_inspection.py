"""What `inspect` reports for each ANN node is what the converter's passes did to it."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.inspection import inspect_model


def tour_model(path):
    """Preprocessing, BN, Dropout, MaxPool, ReLU6, Identity, Reshape, MatMul + Add and Softmax."""
    rng = np.random.default_rng(0)

    def weights(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    init = {"w1": weights(8, 3, 3, 3), "b1": weights(8), "g": np.abs(weights(8)) + 0.5, "be": weights(8),
            "m": weights(8), "v": np.abs(weights(8)) + 0.5, "mean": np.full((1, 3, 1, 1), 0.5, np.float32),
            "std": np.full((1, 3, 1, 1), 0.25, np.float32), "w2": weights(8, 8, 3, 3), "wm": weights(32, 10),
            "bm": weights(10), "shape": np.array([-1, 32], np.int64), "lo": np.array(0, np.float32),
            "hi": np.array(6, np.float32)}
    node = helper.make_node
    nodes = [node("Sub", ["x", "mean"], ["xs"], name="sub"), node("Div", ["xs", "std"], ["xn"], name="div"),
             node("Conv", ["xn", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             node("BatchNormalization", ["c1", "g", "be", "m", "v"], ["bn"], name="bn1"),
             node("Relu", ["bn"], ["r1"], name="relu1"), node("Dropout", ["r1"], ["d1"], name="dropout"),
             node("MaxPool", ["d1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="maxpool"),
             node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             node("Clip", ["c2", "lo", "hi"], ["r2"], name="relu6"),
             node("AveragePool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2], name="avgpool"),
             node("Identity", ["p2"], ["i2"], name="identity"),
             node("Reshape", ["i2", "shape"], ["fl"], name="reshape"),
             node("MatMul", ["fl", "wm"], ["mm"], name="matmul"), node("Add", ["mm", "bm"], ["logits"], name="bias"),
             node("Softmax", ["logits"], ["y"], axis=1, name="softmax")]
    graph = helper.make_graph(nodes, "tour", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_every_node_fate_is_observed(tmp_path):
    info = inspect_model(tour_model(tmp_path / "tour.onnx"))
    fates = {layer.name: layer.fate for layer in info.layers}
    targets = {layer.name: layer.target for layer in info.layers}
    assert info.convertible
    assert fates["sub"] == fates["div"] == fates["bn1"] == "folded into Conv 'conv1'"
    assert fates["conv1"] == "kept, absorbs sub, div, bn1"
    assert fates["relu1"] == "replaced by an IF neuron" and targets["relu1"] == "relu1"
    assert fates["relu6"] == "replaced by an IF neuron (rate capped at 6)"
    assert fates["dropout"] == fates["identity"] == "dropped (a no-op at inference)"
    assert fates["maxpool"] == "kept" and fates["avgpool"] == "kept"
    assert fates["matmul"] == fates["bias"] == "became Gemm 'matmul'"
    assert fates["softmax"].startswith("dropped (monotone")
    assert any("Softmax" in note for note in info.notes)
    shapes = {layer.name: layer.output_shape for layer in info.layers}
    assert shapes["maxpool"] == [1, 8, 4, 4] and shapes["matmul"] == [1, 10]
    macs = {layer.name: layer.macs for layer in info.layers}
    assert macs["conv1"] == 8 * 8 * 8 * 27 and macs["conv2"] == 8 * 4 * 4 * 72 and macs["matmul"] == 320


def test_unsupported_nodes_get_reasons_and_the_rest_still_gets_fates(tmp_path):
    node = helper.make_node
    init = {"w": np.ones((4, 3, 1, 1), np.float32), "lo": np.array(-1, np.float32), "hi": np.array(1, np.float32),
            "g": np.ones((10, 4), np.float32)}
    nodes = [node("Conv", ["x", "w"], ["c"], name="conv"), node("Clip", ["c", "lo", "hi"], ["k"], name="hardtanh"),
             node("Relu", ["k"], ["r"], name="relu"), node("Tanh", ["r"], ["t"], name="tanh"),
             node("GlobalAveragePool", ["t"], ["p"], name="gap"), node("Flatten", ["p"], ["f"], name="flat"),
             node("Gemm", ["f", "g"], ["y"], transB=1, name="fc")]
    graph = helper.make_graph(nodes, "clip", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
                              [numpy_helper.from_array(v, k) for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "clip.onnx"))
    info = inspect_model(tmp_path / "clip.onnx")
    layers = {layer.name: layer for layer in info.layers}
    assert not info.convertible and info.problem == "2 unsupported node(s)"
    assert layers["tanh"].unsupported.startswith("Tanh is not ReLU-like")
    assert layers["hardtanh"].unsupported.startswith("only Clip(0, a)")
    assert layers["relu"].fate == "replaced by an IF neuron" and layers["relu"].unsupported is None
    assert layers["gap"].macs == 64 and layers["fc"].macs == 40


def test_neuron_summary_precision_and_extensions():
    from onnx2snn.inspection import neuron_summary, neuron_text, summarize_values

    assert summarize_values([3.5610551834106445]) == "3.561"
    assert summarize_values([1.0, 1.0]) == "1"
    assert summarize_values([1.0, 3.0]) == "2 ± 1 [1, 3] (2 ch)"
    node = helper.make_node("IF", ["x"], ["y"], domain="onnx2snn", name="n", threshold=[0.5, 1.5],
                            v_init=[0.25, 0.75], reset="subtract", bias=[0.0, 0.1], signed=1, burst=2)
    text = neuron_text(neuron_summary(node))
    assert text == "θ=1 ± 0.5 [0.5, 1.5] (2 ch), soft reset, v0=0.5 ± 0.25 [0.25, 0.75] (2 ch), " \
                   "bias=0.05 ± 0.05 [0, 0.1] (2 ch), signed, burst 2"
