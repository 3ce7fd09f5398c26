"""Passes that remove what inference does not need: Identity, Dropout, constant subgraphs and a
Softmax at the output."""
from __future__ import annotations

import onnx_graphsurgeon as gs

from .common import live_nodes, bypass


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
