"""The last pass: each ReLU, and each Clip(0, a) / ReLU6, becomes an ``onnx2snn.IF`` neuron, and each
MaxPool the spiking max-pool gate ``onnx2snn.MaxPool``."""
from __future__ import annotations

import math

import onnx_graphsurgeon as gs

from ...dialect import DOMAIN, IF_SCHEMA
from .common import const_value


def clip_bounds(node: gs.Node) -> tuple[float, float] | None:
    if "min" in node.attrs or "max" in node.attrs:  # opset < 11
        return float(node.attrs.get("min", -math.inf)), float(node.attrs.get("max", math.inf))
    bounds = []
    for index, default in ((1, -math.inf), (2, math.inf)):
        if len(node.inputs) <= index or node.inputs[index].name == "":
            bounds.append(default)
            continue
        value = const_value(node.inputs[index])
        if value is None or value.size != 1:
            return None
        bounds.append(float(value.reshape(-1)[0]))
    return bounds[0], bounds[1]


def mark_spiking_sites(graph: gs.Graph, notes: list[str], reset: str = "subtract") -> None:
    """ReLU and Clip(0, inf) become IF neurons; Clip(0, a) an IF neuron whose rate is capped at a.

    A MaxPool becomes the spiking max-pool gate, a node of the onnx2snn domain with the same
    attributes, so that no reader of the spiking file mistakes it for a stateless max-pool.
    """
    outputs = set(map(id, graph.outputs))
    for node in graph.nodes:
        attrs = {"threshold": [1.0], "v_init": [0.0], "reset": reset}
        if node.op == "MaxPool" and node.domain in (None, "", "ai.onnx"):
            if len(node.outputs) > 1 and not node.outputs[1].outputs and id(node.outputs[1]) not in outputs:
                node.outputs.pop()  # an unread Indices output; a read one is refused by the runtime op
            node.domain = DOMAIN
            continue
        if node.op == "Relu":
            pass
        elif node.op == "Clip":
            bounds = clip_bounds(node)
            if bounds is None or bounds[0] != 0.0 or bounds[1] <= 0:
                continue  # not a clamped ReLU: the support check reports it
            if math.isfinite(bounds[1]):
                attrs["clip_max"] = bounds[1]
            while len(node.inputs) > 1:  # graphsurgeon lists do not support slice assignment
                node.inputs.pop()
        else:
            continue
        node.op, node.domain, node.attrs = IF_SCHEMA.op_type, DOMAIN, attrs
