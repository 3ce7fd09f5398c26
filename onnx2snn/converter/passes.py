"""Normalizing passes: each takes a graphsurgeon graph and does one thing to it.

The order matters and lives in ``normalize.PASSES``. Every pass keeps the graph's numerical
meaning (tests check each one against onnxruntime), except ``mark_spiking_sites``, which
swaps ReLU for an IF neuron whose analog meaning is that same ReLU.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import onnx_graphsurgeon as gs

from ..ops import SNN_DOMAIN
from .graph_utils import bypass, channel_shape, const_value, only_reader

log = logging.getLogger("onnx2snn")


def drop_identity_and_dropout(graph: gs.Graph, notes: list[str]) -> None:
    for node in list(graph.nodes):
        if node.op in ("Identity", "Dropout") and node.inputs:
            bypass(graph, node, node.inputs[0])


def fold_constants(graph: gs.Graph, notes: list[str]) -> None:
    graph.fold_constants(error_ok=True).cleanup()


def drop_output_softmax(graph: gs.Graph, notes: list[str]) -> None:
    """Softmax/LogSoftmax are monotone, so the argmax readout needs neither."""
    for node in list(graph.nodes):
        if node.op in ("Softmax", "LogSoftmax") and node.outputs and node.outputs[0] in graph.outputs:
            bypass(graph, node, node.inputs[0])
            notes.append(f"dropped {node.op} {node.name!r} at the output: the SNN reads out the argmax "
                         "of accumulated potentials")


def _affine_of_batchnorm(node: gs.Node) -> tuple[np.ndarray, np.ndarray] | None:
    values = [const_value(t) for t in node.inputs[1:5]]
    if any(v is None for v in values):
        return None
    scale, bias, mean, var = (v.astype(np.float64) for v in values)
    eps = float(node.attrs.get("epsilon", 1e-5))
    gain = scale / np.sqrt(var + eps)
    return gain, bias - mean * gain


def _fold_affine_into_producer(graph: gs.Graph, producer: gs.Node, gain: np.ndarray, shift: np.ndarray) -> bool:
    """Fold a per-output-channel ``y * gain + shift`` into a Conv or Gemm with constant weights."""
    weight = const_value(producer.inputs[1]) if len(producer.inputs) > 1 else None
    if weight is None or producer.op not in ("Conv", "Gemm"):
        return False
    weight = weight.astype(np.float64)
    if producer.op == "Conv":
        outputs = weight.shape[0]
        gain_shape = [-1] + [1] * (weight.ndim - 1)
    else:
        if producer.attrs.get("transA", 0):
            return False
        trans_b = bool(producer.attrs.get("transB", 0))
        outputs = weight.shape[0] if trans_b else weight.shape[1]
        gain_shape = [-1, 1] if trans_b else [1, -1]
        weight = weight * float(producer.attrs.get("alpha", 1.0))
    if gain.size != outputs:
        return False
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
    new_weight = (weight * gain.reshape(gain_shape)).astype(np.float32)
    new_bias = (bias * gain + shift).astype(np.float32)
    producer.inputs[1] = gs.Constant(producer.inputs[1].name + "_folded", new_weight)
    bias_const = gs.Constant(producer.name + "_bias_folded", new_bias)
    if len(producer.inputs) > 2:
        producer.inputs[2] = bias_const
    else:
        producer.inputs.append(bias_const)
    return True


def fold_batchnorm(graph: gs.Graph, notes: list[str]) -> None:
    """Fold BatchNormalization into the Conv/Gemm before it; elsewhere make it a Mul + Add."""
    for node in list(graph.nodes):
        if node.op != "BatchNormalization":
            continue
        affine = _affine_of_batchnorm(node)
        if affine is None:
            continue  # left for the support check to report
        gain, shift = affine
        source = node.inputs[0]
        producer = source.inputs[0] if source.inputs else None
        if producer is not None and only_reader(source, graph) is node and \
                _fold_affine_into_producer(graph, producer, gain, shift):
            bypass(graph, node, source)
            continue
        rank = len(source.shape) if source.shape else None
        shape = channel_shape(rank, gain.size)
        scaled = gs.Variable(node.name + "_scaled", dtype=np.float32)
        mul = gs.Node("Mul", node.name + "_mul", inputs=[source, gs.Constant(node.name + "_gain", gain.reshape(shape).astype(np.float32))], outputs=[scaled])
        out = node.outputs[0]
        add = gs.Node("Add", node.name + "_add", inputs=[scaled, gs.Constant(node.name + "_shift", shift.reshape(shape).astype(np.float32))], outputs=[out])
        node.outputs.clear()
        node.inputs.clear()
        graph.nodes += [mul, add]


def _clip_bounds(node: gs.Node) -> tuple[float, float] | None:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11
        return float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))
    bounds = []
    for index, default in ((1, -math.inf), (2, math.inf)):
        if len(node.inputs) <= index or node.inputs[index].name == "":
            bounds.append(default)
            continue
        value = const_value(node.inputs[index])
        if value is None:
            return None
        bounds.append(float(value.reshape(-1)[0]))
    return bounds[0], bounds[1]


def mark_spiking_sites(graph: gs.Graph, notes: list[str], reset: str = "subtract") -> None:
    """Each ReLU, and each Clip(0, a) / ReLU6, becomes an ``onnx2snn.IF`` neuron."""
    for node in graph.nodes:
        attrs = {"threshold": [1.0], "v_init": [0.0], "reset": reset}
        if node.op == "Relu":
            pass
        elif node.op == "Clip":
            bounds = _clip_bounds(node)
            if bounds is None or bounds[0] != 0.0 or not math.isfinite(bounds[1]) or bounds[1] <= 0:
                continue  # not a clamped ReLU: the support check reports it
            attrs["clip_max"] = bounds[1]
            node.inputs[1:] = []
        else:
            continue
        node.op, node.domain, node.attrs = "IF", SNN_DOMAIN, attrs


def canonical_reshapes(graph: gs.Graph, notes: list[str]) -> None:
    """Make Reshape targets batch-agnostic: the leading dimension becomes 0 (copy the batch)."""
    for node in graph.nodes:
        if node.op != "Reshape":
            continue
        shape = const_value(node.inputs[1])
        data = node.inputs[0]
        if shape is None or shape.size == 0 or not data.shape or node.attrs.get("allowzero", 0):
            continue
        target = [int(s) for s in shape.reshape(-1)]
        rest_in = [d for d in data.shape[1:]]
        if target[0] == 0 or any(not isinstance(d, int) for d in rest_in):
            continue
        rest_out = target[1:]
        if -1 in rest_out:
            continue
        if target[0] == -1 and math.prod(rest_in) != math.prod(rest_out):
            continue
        batch = data.shape[0]
        if target[0] == -1 or (isinstance(batch, int) and target[0] == batch):
            node.inputs[1] = gs.Constant(node.inputs[1].name + "_batchfree", np.array([0] + rest_out, dtype=np.int64))


def free_batch_dimension(graph: gs.Graph, notes: list[str]) -> None:
    """A graph exported with a fixed batch size gets a symbolic one, so any batch runs."""
    for tensor in list(graph.inputs) + list(graph.outputs):
        if tensor.shape:
            tensor.shape = ["N"] + list(tensor.shape[1:])
