"""Layout passes for TensorFlow/Keras-style graphs: NHWC Transposes and MatMul + Add.

Converters from NHWC frameworks wrap each convolution in Transposes and write dense layers as
MatMul + Add. ``cancel_transposes`` pushes each Transpose down through elementwise ops until it
meets its inverse; ``sink_affine_through_transpose`` moves input preprocessing next to the first
conv so that it folds; ``matmul_add_to_gemm`` writes 2-D MatMul (+ Add) as one Gemm.
"""
from __future__ import annotations

import numpy as np
import onnx_graphsurgeon as gs

from .affine import AFFINE_OPS
from .common import (
    const_value,
    live_nodes,
    new_name,
    only_reader,
    rank_of,
    readers,
    refresh_shapes,
    remove_node,
    rewrite_until_stable,
    variable_and_constant,
)

# Ops that act elementwise, so a Transpose commutes with them.
_UNARY = ("Relu", "Clip", "Identity", "Neg")


def _perm(node: gs.Node, rank: int | None) -> list[int] | None:
    perm = node.attrs.get("perm")
    if perm is None:
        return None if rank is None else list(reversed(range(rank)))
    return [int(p) for p in perm]


def _padded(value: np.ndarray, rank: int) -> np.ndarray | None:
    if value.ndim > rank:
        return None
    return value.reshape((1,) * (rank - value.ndim) + value.shape)


def matmul_add_to_gemm(graph: gs.Graph, notes: list[str]) -> None:
    """``MatMul(x, W) + b`` with 2-D ``x`` and constant 2-D ``W`` becomes ``Gemm(x, W, b)``."""
    refresh_shapes(graph)
    for node in live_nodes(graph):
        if node.op != "MatMul" or len(node.inputs) != 2 or rank_of(node.inputs[0]) != 2:
            continue
        weight = const_value(node.inputs[1])
        if weight is None or weight.ndim != 2:
            continue
        out = node.outputs[0]
        add = only_reader(out, graph)
        bias = None
        if add is not None and add.op == "Add":
            split = variable_and_constant(add)
            if split is not None and split[1] is out and split[2].size == weight.shape[1] and \
                    split[2].ndim <= 2 and split[2].dtype.kind == "f":
                bias = split[2].reshape(-1)
        if bias is None:
            continue  # a bare MatMul runs as it is
        inputs = [node.inputs[0], node.inputs[1], gs.Constant(new_name(graph, node, "_bias"), bias.astype(np.float32))]
        outputs = list(add.outputs)
        remove_node(graph, add)
        remove_node(graph, node)
        graph.nodes.append(gs.Node("Gemm", node.name, inputs=inputs, outputs=outputs))
    graph.cleanup().toposort()


def cancel_transposes(graph: gs.Graph, notes: list[str]) -> None:
    """Push each Transpose down through elementwise ops; drop it where it meets its inverse."""
    def push_down(node: gs.Node) -> bool:
        if node.op != "Transpose" or not node.inputs:
            return False
        perm = _perm(node, rank_of(node.inputs[0]) or rank_of(node.outputs[0]))
        reader = only_reader(node.outputs[0], graph) if perm is not None else None
        if reader is None:
            return False
        if reader.op == "Transpose":
            return _merge(graph, node, reader, perm)
        return _commutes(reader, node.outputs[0]) and _swap(graph, node, reader, perm)

    rewrite_until_stable(graph, push_down)


def _merge(graph: gs.Graph, first: gs.Node, second: gs.Node, perm: list[int]) -> bool:
    second_perm = _perm(second, len(perm))
    combined = [perm[i] for i in second_perm]
    if combined == list(range(len(perm))):
        keep, out = first.inputs[0], second.outputs[0]
        if out in graph.outputs:
            return False
        for consumer in list(out.outputs):
            for i, tensor in enumerate(consumer.inputs):
                if tensor is out:
                    consumer.inputs[i] = keep
        remove_node(graph, second)
        return True
    first.attrs["perm"] = combined
    first.outputs[0] = second.outputs[0]
    remove_node(graph, second)
    return True


def _commutes(reader: gs.Node, tensor: gs.Tensor) -> bool:
    if reader.inputs[0] is not tensor:
        return False
    if reader.op in _UNARY:
        return all(const_value(t) is not None or not t.name for t in reader.inputs[1:])
    if reader.op in AFFINE_OPS:
        split = variable_and_constant(reader)
        return split is not None and split[1] is tensor
    return False


def _swap(graph: gs.Graph, transpose: gs.Node, reader: gs.Node, perm: list[int]) -> bool:
    """``reader(Transpose(x))`` -> ``Transpose(reader'(x))``, permuting a constant operand back."""
    rank = len(perm)
    inverse = list(np.argsort(perm))
    if reader.outputs[0] in graph.outputs:
        return False  # keep the graph's output layout where it is
    if reader.op in AFFINE_OPS:
        index, _, value = variable_and_constant(reader)
        padded = _padded(value, rank)
        if padded is None:
            return False
        reader.inputs[index] = gs.Constant(new_name(graph, reader, "_const_untransposed"), np.ascontiguousarray(
            np.transpose(padded, inverse)))
    source, middle, out = transpose.inputs[0], transpose.outputs[0], reader.outputs[0]
    reader.inputs[0] = source
    new_mid = gs.Variable(new_name(graph, middle, "_untransposed"), dtype=middle.dtype)
    reader.outputs[0] = new_mid
    transpose.inputs[0] = new_mid
    transpose.outputs[0] = out
    return True


def sink_affine_through_transpose(graph: gs.Graph, notes: list[str]) -> None:
    """``x -> (Sub|Div|Mul|Add const) -> Transpose -> Conv``: the Transpose moves first, so the
    affine (often input preprocessing in NHWC) sits right before the Conv and folds into it."""
    rewrite_until_stable(graph, lambda node: _sink_one(graph, node))  # a Sub-then-Mul chain moves one at a time


def _sink_one(graph: gs.Graph, node: gs.Node) -> bool:
    if node.op not in AFFINE_OPS:
        return False
    split = variable_and_constant(node)
    transpose = only_reader(node.outputs[0], graph)
    if split is None or transpose is None or transpose.op != "Transpose":
        return False
    index, data, value = split
    rank = rank_of(data)
    perm = _perm(transpose, rank)
    consumers = readers(transpose.outputs[0], graph)
    if perm is None or not consumers or not all(
            c.op in ("Conv", "Gemm") or (c.op in AFFINE_OPS and variable_and_constant(c) is not None)
            for c in consumers):
        return False
    padded = _padded(value, len(perm))
    if padded is None:
        return False
    middle = gs.Variable(new_name(graph, node, "_transposed_input"), dtype=np.float32)
    out = transpose.outputs[0]
    transpose.inputs[0] = data
    transpose.outputs[0] = middle
    node.inputs[1 - index] = middle
    node.inputs[index] = gs.Constant(new_name(graph, node, "_const_transposed"),
                                     np.ascontiguousarray(np.transpose(padded, perm)))
    node.outputs[0] = out
    return True
