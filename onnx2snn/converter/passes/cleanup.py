"""Passes that remove what inference does not need: Identity, Dropout, constant subgraphs and a
Softmax at the output."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from .common import bypass, live_nodes


def drop_identity_and_dropout(graph: gs.Graph, notes: list[str]) -> None:
    for node in live_nodes(graph):
        if node.op in ("Identity", "Dropout") and node.inputs:
            bypass(graph, node, node.inputs[0])


def fold_constants(graph: gs.Graph, notes: list[str]) -> None:
    graph.fold_constants(error_ok=True).cleanup()


def drop_output_softmax(graph: gs.Graph, notes: list[str]) -> None:
    """Softmax/LogSoftmax are monotone, so the argmax readout needs neither."""
    for node in live_nodes(graph):
        if node.op in ("Softmax", "LogSoftmax") and node.outputs and node.outputs[0] in graph.outputs:
            bypass(graph, node, node.inputs[0])
            notes.append(f"dropped {node.op} {node.name!r} at the output: the SNN reads out the argmax "
                         "of accumulated potentials")


def _plain(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def drop_default_attributes(graph: gs.Graph, notes: list[str]) -> None:
    """Remove attributes that only restate the op's default (``auto_pad="NOTSET"``, ``transA=0``):
    exporters differ on whether they write them, the canonical graph should not."""
    for node in graph.nodes:
        if node.domain not in ("", "ai.onnx", None):
            continue
        try:
            schema = onnx.defs.get_schema(node.op, max_inclusive_version=graph.opset, domain="")
        except Exception:  # an op this onnx does not know: the support check reports it
            continue
        for name in list(node.attrs):
            attribute = schema.attributes.get(name)
            if attribute is None or not attribute.default_value.name:
                continue
            default = onnx.helper.get_attribute_value(attribute.default_value)
            if _plain(node.attrs[name]) == _plain(default):
                del node.attrs[name]
