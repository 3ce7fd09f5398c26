"""Exporters: NHWC graphs as TensorFlow/Keras converters write them, and the shared ResNet-20
re-exported by the other PyTorch exporters, all reduce to the same canonical graph."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from conftest import RESNET20_MEAN, RESNET20_STD
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from onnx2snn.converter.methods.spec import ThresholdMethod
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.thresholds import compute_thresholds
from onnx2snn.dialect import load_model
from onnx2snn.runtime.network import SpikingNetwork

from helpers import run_onnxruntime
from torch_models import export

# -- NHWC (TensorFlow / Keras via tf2onnx) --------------------------------------------------------

NHWC_TO_NCHW, NCHW_TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def nhwc_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Keras-style: preprocessing on the NHWC input, each conv wrapped in Transposes with its bias
    added in NHWC, max pooling wrapped too, a NHWC flatten, and dense layers as MatMul + Add."""
    def conv_block(name, source, weight):
        return [helper.make_node("Transpose", [source], [f"{name}_in"], perm=NHWC_TO_NCHW),
                helper.make_node("Conv", [f"{name}_in", weight], [f"{name}_out"], pads=[1, 1, 1, 1], name=name),
                helper.make_node("Transpose", [f"{name}_out"], [f"{name}_nhwc"], perm=NCHW_TO_NHWC),
                helper.make_node("Add", [f"{name}_nhwc", f"{weight}_bias"], [f"{name}_biased"]),
                helper.make_node("Relu", [f"{name}_biased"], [f"{name}_relu"])]

    init = {"mean": np.array([0.5, 0.4, 0.3], np.float32), "scale": np.array([4.0, 4.5, 5.0], np.float32),
            "w1": rng.normal(0, 0.4, (8, 3, 3, 3)), "w1_bias": rng.normal(0, 0.1, 8),
            "w2": rng.normal(0, 0.2, (8, 8, 3, 3)), "w2_bias": rng.normal(0, 0.1, 8),
            "shape": np.array([-1, 4 * 4 * 8], np.int64),
            "d1": rng.normal(0, 0.1, (128, 16)), "d1_bias": rng.normal(0, 0.1, 16),
            "d2": rng.normal(0, 0.3, (16, 10)), "d2_bias": rng.normal(0, 0.1, 10)}
    nodes = [helper.make_node("Sub", ["x", "mean"], ["centered"]),
             helper.make_node("Mul", ["centered", "scale"], ["pre"]),
             *conv_block("conv1", "pre", "w1"), *conv_block("conv2", "conv1_relu", "w2"),
             helper.make_node("Transpose", ["conv2_relu"], ["pool_in"], perm=NHWC_TO_NCHW),
             helper.make_node("MaxPool", ["pool_in"], ["pool_out"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Transpose", ["pool_out"], ["pool_nhwc"], perm=NCHW_TO_NHWC),
             helper.make_node("Reshape", ["pool_nhwc", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "d1"], ["h"]), helper.make_node("Add", ["h", "d1_bias"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["hr"]),
             helper.make_node("MatMul", ["hr", "d2"], ["logits"]),
             helper.make_node("Add", ["logits", "d2_bias"], ["y"])]
    graph = helper.make_graph(
        nodes, "keras_nhwc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(np.asarray(v, np.int64 if k == "shape" else np.float32), k)
                     for k, v in init.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tf2onnx")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_nhwc_graph_cancels_transposes_and_folds_preprocessing(rng):
    model = nhwc_model(rng)
    canonical = normalize(model).model
    ops = [n.op_type for n in canonical.graph.node]
    # Only the layout change at the input and the NHWC flatten order remain. The preprocessing
    # shift meets the first conv's zero padding, so it folds into a bias map (the Add).
    assert ops == ["Transpose", "Conv", "Add", "IF", "Conv", "IF", "MaxPool", "Transpose", "Flatten", "Gemm", "IF",
                   "Gemm"], ops
    x = rng.uniform(0, 1, (3, 8, 8, 3)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = SpikingNetwork(canonical).analog(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_nhwc_converted_file_in_analog_mode_matches_onnxruntime(rng, tmp_path):
    """The final spiking file of the Keras-style graph takes NHWC input, records that layout, and
    computes the ANN in analog mode."""
    from onnx2snn.converter.convert import ConversionOptions, convert_model
    from onnx2snn.dialect import save_model
    from onnx2snn.runtime import load

    model = nhwc_model(rng)
    calibration = torch.from_numpy(rng.uniform(0, 1, (6, 8, 8, 3)).astype(np.float32))
    conversion = convert_model(model, calibration, ConversionOptions(threshold="max"))
    assert {p.key: p.value for p in conversion.model.metadata_props}["onnx2snn.input_layout"] == "nhwc"
    path = tmp_path / "snn.onnx"
    save_model(conversion.model, path)
    x = rng.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    expected = run_onnxruntime(model, x)
    got = load(path).analog(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


# -- the shared ResNet-20, re-exported ------------------------------------------------------------

class Shortcut(nn.Module):
    """Option A: subsample by 2 and zero-pad the new channels."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # The shared file has BN folded into conv biases; an identity-statistics BN carries the bias,
    # so exports without constant folding keep real BatchNormalization nodes to fold.
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))


class Block(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1, self.conv2 = conv_bn(cin, planes, stride), conv_bn(planes, planes)
        self.shortcut = Shortcut(planes) if stride != 1 or cin != planes else nn.Identity()

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = conv_bn(3, 16)
        blocks, cin = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for index in range(3):
                blocks.append(Block(cin, planes, stride if index == 0 else 1))
                cin = planes
        self.layers = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.conv1(x)))
        return self.linear(torch.flatten(F.avg_pool2d(out, out.size(3)), 1))


def resnet20_from_onnx(model: onnx.ModelProto) -> ResNet20:
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    net = ResNet20()
    pairs = [(m[0], m[1]) for m in net.modules() if isinstance(m, nn.Sequential) and len(m) == 2
             and isinstance(m[0], nn.Conv2d)]
    assert len(pairs) == len(convs) == 19
    for (conv, norm), node in zip(pairs, convs):
        conv.weight.data = torch.from_numpy(weights[node.input[1]].copy())
        norm.bias.data = torch.from_numpy(weights[node.input[2]].copy())
        norm.running_var.data.fill_(1.0 - norm.eps)  # with mean 0 and weight 1: BN(z) = z + bias
    net.linear.weight.data = torch.from_numpy(weights["linear.weight"].copy())
    net.linear.bias.data = torch.from_numpy(weights["linear.bias"].copy())
    return net.eval()


def structure(model: onnx.ModelProto) -> list[str]:
    """The graph up to node names and topological order: each node as its op, attributes and
    the structure of what it reads (a Merkle-style description), sorted."""
    constants = {init.name: tuple(init.dims) for init in model.graph.initializer}
    described: dict[str, str] = {i.name: "input" for i in model.graph.input}
    nodes = []
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = sorted((k, str(v)) for k, v in attrs.items() if k not in ("threshold", "v_init"))
        reads = [f"const{constants[name]}" if name in constants else described[name] for name in node.input if name]
        text = f"{node.op_type}{attrs}({', '.join(reads)})"
        nodes.append(text)
        for output in node.output:
            described[output] = f"#{hash(text) & 0xFFFFFFFF:x}"
    return sorted(nodes)


def neuron_thresholds(canonical: onnx.ModelProto, images: torch.Tensor) -> list[float]:
    network = SpikingNetwork(canonical)
    values = compute_thresholds(network, images, ThresholdMethod.parse("max"), timesteps=8)
    return [float(values[name].threshold[0]) for name in network.neurons()]


@pytest.mark.slow
def test_resnet20_reexports_give_the_same_canonical_graph_and_thresholds(resnet20, cifar10, tmp_path):
    from onnx2snn.data import load_split, to_tensor

    original = load_model(resnet20)
    net = resnet20_from_onnx(original)
    images = to_tensor(load_split(cifar10, "train", limit=8, seed=0).images, RESNET20_MEAN, RESNET20_STD)
    with torch.no_grad():
        np.testing.assert_allclose(net(images).numpy(), run_onnxruntime(original, images.numpy()), atol=1e-4)
    variants = {"shared": original,
                "torchscript-13-nofold": export(net, "torchscript-13-nofold", tmp_path),
                "dynamo-18": export(net, "dynamo-18", tmp_path)}
    assert "BatchNormalization" in {n.op_type for n in variants["torchscript-13-nofold"].graph.node}
    canonicals = {name: normalize(model).model for name, model in variants.items()}
    shapes = {name: structure(model) for name, model in canonicals.items()}
    for name in ("torchscript-13-nofold", "dynamo-18"):
        assert shapes[name] == shapes["shared"], (name, set(shapes[name]) ^ set(shapes["shared"]))
    # Thresholds in the order the neurons run, which the structure makes comparable.
    thresholds = {name: sorted(neuron_thresholds(model, images)) for name, model in canonicals.items()}
    assert len(thresholds["shared"]) == 19
    for name in ("torchscript-13-nofold", "dynamo-18"):
        np.testing.assert_allclose(thresholds[name], thresholds["shared"], rtol=1e-5)
