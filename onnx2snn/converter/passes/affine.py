"""Per-channel affine transforms (BatchNormalization, preprocessing, Mul/Add by constants).

``batchnorm_to_affine`` turns each BatchNormalization into ``x * gain + shift``. The fold
passes then move every such affine into a weighted layer: into the Conv/Gemm that produces its
input when that layer has no other reader, else into the Conv/Gemm that reads its output (input
preprocessing, BN on the input or after a Concat/Add that feeds a conv directly). An affine with
no weighted layer on either side (pre-activation BN -> ReLU) stays as Mul + Add: the runtime
executes it in front of the neuron, which integrates it like any other input current.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx_graphsurgeon as gs
import torch

from ... import ops
from ...ops import NodeInfo
from ...ops.synaptic import Conv
from .common import (
    bypass,
    channel_shape,
    const_value,
    live_nodes,
    new_name,
    only_reader,
    per_channel,
    rank_of,
    readers,
    refresh_shapes,
    remove_node,
    rewrite_until_stable,
    variable_and_constant,
)

AFFINE_OPS = ("Add", "Sub", "Mul", "Div")


@dataclasses.dataclass
class Affine:
    """``node`` computes ``data * scale + shift`` with per-channel (axis 1) vectors."""

    node: gs.Node
    data: gs.Tensor
    scale: np.ndarray
    shift: np.ndarray


def as_affine(node: gs.Node) -> Affine | None:
    if node.op not in AFFINE_OPS:
        return None
    split = variable_and_constant(node)
    if split is None:
        return None
    const_index, data, value = split
    vector = per_channel(value, rank_of(data))
    if vector is None:
        return None
    channels = data.shape[1] if len(data.shape) > 1 else 1
    if vector.size > 1 and vector.size != channels:
        return None  # would broadcast the data to more channels
    one, zero = np.ones(1), np.zeros(1)
    if node.op == "Add":
        return Affine(node, data, one, vector)
    if node.op == "Mul":
        return Affine(node, data, vector, zero)
    if node.op == "Sub":
        return Affine(node, data, one, -vector) if const_index == 1 else Affine(node, data, -one, vector)
    if const_index == 1 and np.all(vector != 0):  # Div: only data / constant is affine
        return Affine(node, data, 1.0 / vector, zero)
    return None


def batchnorm_to_affine(graph: gs.Graph, notes: list[str]) -> None:
    """BatchNormalization (inference) becomes Mul + Add by per-channel constants."""
    refresh_shapes(graph)
    for node in live_nodes(graph):
        if node.op != "BatchNormalization" or any(o.outputs for o in node.outputs[1:]):
            continue  # not BN, or BN in training mode whose running statistics are read
        values = [const_value(t) for t in node.inputs[1:5]]
        if len(values) != 4 or any(v is None for v in values):
            continue  # left for the support check to report
        scale, bias, mean, var = (v.astype(np.float64).reshape(-1) for v in values)
        gain = scale / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
        shift = bias - mean * gain
        shape = channel_shape(rank_of(node.inputs[0]), gain.size)
        scaled = gs.Variable(new_name(graph, node, "_scaled"), dtype=np.float32, shape=node.inputs[0].shape)
        out = node.outputs[0]
        mul = gs.Node("Mul", new_name(graph, node, "_mul"), inputs=[
            node.inputs[0], gs.Constant(new_name(graph, node, "_gain"), gain.reshape(shape).astype(np.float32))],
            outputs=[scaled])
        add = gs.Node("Add", new_name(graph, node, "_add"), inputs=[
            scaled, gs.Constant(new_name(graph, node, "_shift"), shift.reshape(shape).astype(np.float32))],
            outputs=[out])
        remove_node(graph, node)
        graph.nodes += [mul, add]
    graph.cleanup().toposort()


def weight_axes(graph: gs.Graph, node: gs.Node, weight: np.ndarray) -> tuple[int, int] | None:
    """(output, input) channel axes of ``node``'s weight, as its op class lays it out; None: not foldable."""
    declared = ops.lookup("", node.op, graph.opset or 1) if node.domain in (None, "", "ai.onnx") else None
    if declared is None or declared.layout is None:
        return None
    return declared.layout.axes(node.attrs, weight.ndim)


# -- folding into the layer before -------------------------------------------------------------

def _fold_into_producer(graph: gs.Graph, producer: gs.Node, gain: np.ndarray, shift: np.ndarray) -> bool:
    """Fold a per-output-channel ``y * gain + shift`` into a weighted layer (Conv, Gemm) with constant weights."""
    weight = const_value(producer.inputs[1]) if len(producer.inputs) > 1 else None
    axes = weight_axes(graph, producer, weight) if weight is not None else None
    if axes is None:
        return False
    weight = weight.astype(np.float64)
    outputs = weight.shape[axes[0]]
    gain_shape = [-1 if axis == axes[0] else 1 for axis in range(weight.ndim)]
    if producer.op == "Gemm":
        weight = weight * float(producer.attrs.get("alpha", 1.0))
    if gain.size not in (1, outputs) or shift.size not in (1, outputs):
        return False
    gain, shift = np.broadcast_to(gain, (outputs,)), np.broadcast_to(shift, (outputs,))
    bias = np.zeros(outputs)
    if len(producer.inputs) > 2 and producer.inputs[2].name:
        bias = const_value(producer.inputs[2])
        if bias is None or bias.size not in (1, outputs):
            return False
        bias = np.broadcast_to(bias.astype(np.float64).reshape(-1), (outputs,))
        if producer.op == "Gemm":
            bias = bias * float(producer.attrs.get("beta", 1.0))
    if producer.op == "Gemm":
        producer.attrs["alpha"], producer.attrs["beta"] = 1.0, 1.0
    producer.inputs[1] = gs.Constant(new_name(graph, producer, "_weight_folded"),
                                     (weight * gain.reshape(gain_shape)).astype(np.float32))
    bias_const = gs.Constant(new_name(graph, producer, "_bias_folded"), (bias * gain + shift).astype(np.float32))
    if len(producer.inputs) > 2:
        producer.inputs[2] = bias_const
    else:
        producer.inputs.append(bias_const)
    return True


def fold_affine_into_producer(graph: gs.Graph, notes: list[str]) -> None:
    """``Conv/Gemm -> affine`` becomes one Conv/Gemm, when the layer's output has no other reader."""
    def fold(node: gs.Node) -> bool:
        affine = as_affine(node)
        if affine is None or not affine.data.inputs or only_reader(affine.data, graph) is not node:
            return False
        if not _fold_into_producer(graph, affine.data.inputs[0], affine.scale, affine.shift):
            return False
        bypass(graph, node, affine.data)
        return True

    rewrite_until_stable(graph, fold)


# -- folding into the layer after --------------------------------------------------------------

def _input_channel_index(weight: np.ndarray, group: int) -> np.ndarray:
    """For a grouped conv weight [O, I/g, ...]: the input channel that each [o, j] reads."""
    outputs, per_group = weight.shape[0], weight.shape[1]
    return (np.arange(outputs) // (outputs // group))[:, None] * per_group + np.arange(per_group)[None, :]


def _conv_of_constant(conv: gs.Node, weight: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The conv (without bias) applied to a constant image, with the node's own padding rules."""
    attrs = dict(conv.attrs)
    info = NodeInfo(conv.name, "Conv", "", 13, attrs, ["x", "w"], ["y"], {1: weight})
    with torch.no_grad():
        return Conv(info)(torch.from_numpy(image), torch.from_numpy(weight)).numpy().astype(np.float64)


def _fold_into_conv(conv: gs.Node, affine: Affine, graph: gs.Graph) -> None:
    weight = const_value(conv.inputs[1]).astype(np.float64)
    group = int(conv.attrs.get("group", 1))
    channels = weight.shape[1] * group
    scale = np.broadcast_to(affine.scale, (channels,))
    shift = np.broadcast_to(affine.shift, (channels,))
    index = _input_channel_index(weight, group)
    new_weight = weight * scale[index].reshape(index.shape + (1,) * (weight.ndim - 2))
    # The shift's contribution: the conv of a constant image (zero-padded like the real input).
    spatial = list(affine.data.shape[2:])
    bias = np.zeros(weight.shape[0])
    if len(conv.inputs) > 2 and conv.inputs[2].name:
        bias = bias + const_value(conv.inputs[2]).astype(np.float64).reshape(-1)
    shift_map = None
    if any(shift):
        image = np.broadcast_to(shift.reshape([1, channels] + [1] * len(spatial)), [1, channels] + spatial)
        response = _conv_of_constant(conv, weight.astype(np.float32), np.ascontiguousarray(image, dtype=np.float32))
        flat = response.reshape(response.shape[1], -1)
        if np.allclose(flat, flat[:, :1], rtol=1e-6, atol=1e-7 * (1 + np.abs(flat).max())):
            bias = bias + flat[:, 0]  # no padding reaches the shift: a plain bias
        else:
            shift_map = response  # zero padding makes the border differ: a full bias map
    conv.inputs[0] = affine.data
    conv.inputs[1] = gs.Constant(new_name(graph, conv, "_weight_prefolded"), new_weight.astype(np.float32))
    bias_const = gs.Constant(new_name(graph, conv, "_bias_prefolded"), bias.astype(np.float32))
    if len(conv.inputs) > 2:
        conv.inputs[2] = bias_const
    else:
        conv.inputs.append(bias_const)
    if shift_map is not None:
        out = conv.outputs[0]
        raw = gs.Variable(new_name(graph, conv, "_before_border_bias"), dtype=np.float32, shape=out.shape)
        conv.outputs[0] = raw
        graph.nodes.append(gs.Node("Add", new_name(graph, conv, "_border_bias"), inputs=[
            raw, gs.Constant(new_name(graph, conv, "_shift_map"), shift_map.astype(np.float32))], outputs=[out]))


def _fold_into_gemm(gemm: gs.Node, affine: Affine, graph: gs.Graph) -> None:
    weight = const_value(gemm.inputs[1])
    trans_b = bool(gemm.attrs.get("transB", 0))
    matrix = (weight.T if trans_b else weight).astype(np.float64)  # [features, outputs]
    features, outputs = matrix.shape
    scale = np.broadcast_to(affine.scale, (features,))
    shift = np.broadcast_to(affine.shift, (features,))
    alpha, beta = float(gemm.attrs.get("alpha", 1.0)), float(gemm.attrs.get("beta", 1.0))
    bias = np.zeros(outputs)
    if len(gemm.inputs) > 2 and gemm.inputs[2].name:
        value = const_value(gemm.inputs[2])
        bias = np.broadcast_to(value.astype(np.float64).reshape(-1), (outputs,)) * beta
    new_matrix = matrix * scale[:, None]
    bias = bias + alpha * (shift @ matrix)
    gemm.inputs[0] = affine.data
    gemm.inputs[1] = gs.Constant(new_name(graph, gemm, "_weight_prefolded"),
                                 (new_matrix.T if trans_b else new_matrix).astype(np.float32))
    bias_const = gs.Constant(new_name(graph, gemm, "_bias_prefolded"), bias.astype(np.float32))
    if len(gemm.inputs) > 2:
        gemm.inputs[2] = bias_const
    else:
        gemm.inputs.append(bias_const)
    gemm.attrs["beta"] = 1.0


def fold_affine_into_consumer(graph: gs.Graph, notes: list[str]) -> None:
    """``affine -> Conv/Gemm`` becomes one Conv/Gemm (input preprocessing, BN before a conv).

    Zero padding is exact: the padded border of the original input is zero *after* the affine,
    so a shift that meets padding becomes a bias map rather than a per-channel bias.
    """
    def fold(node: gs.Node) -> bool:
        affine = as_affine(node)
        if affine is None:
            return False
        consumers = readers(node.outputs[0], graph)
        if not consumers or any(c.op not in _FOLD_INTO_CONSUMER for c in consumers):
            return False
        if not all(_foldable_consumer(graph, c, affine) for c in consumers):
            return False
        for consumer in consumers:
            _FOLD_INTO_CONSUMER[consumer.op](consumer, affine, graph)
        remove_node(graph, node)
        return True

    rewrite_until_stable(graph, fold)


def _foldable_consumer(graph: gs.Graph, consumer: gs.Node, affine: Affine) -> bool:
    """Whether ``_fold_into_conv``/``_fold_into_gemm`` can take ``affine`` into ``consumer``."""
    out = affine.node.outputs[0]
    if consumer.inputs[0] is not out or any(t is out for t in consumer.inputs[1:]):
        return False
    if len(consumer.inputs) < 2 or const_value(consumer.inputs[1]) is None:
        return False
    if len(consumer.inputs) > 2 and consumer.inputs[2].name and const_value(consumer.inputs[2]) is None:
        return False
    weight = const_value(consumer.inputs[1])
    bias = const_value(consumer.inputs[2]) if len(consumer.inputs) > 2 and consumer.inputs[2].name else None
    axes = weight_axes(graph, consumer, weight)
    if axes is None:
        return False
    if consumer.op == "Gemm":
        return bias is None or bias.size in (1, weight.shape[axes[0]])
    data = affine.data
    if not data.shape or len(data.shape) != weight.ndim or (bias is not None and bias.size != weight.shape[0]):
        return False
    # A shift meets the zero padding: its effect is computed on the real spatial size.
    return not np.any(affine.shift) or all(isinstance(d, int) for d in data.shape[2:])


# How the input-side affine folds into each weighted op (the math differs: a conv's zero padding
# turns a shift into a border-aware bias map, a Gemm's shift into a bias through the matrix).
_FOLD_INTO_CONSUMER = {"Conv": _fold_into_conv, "Gemm": _fold_into_gemm}
