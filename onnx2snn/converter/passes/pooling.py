"""MaxPool: the spiking max-pool gate by default (``spiking.py``), or swapped for AveragePool on request."""
from __future__ import annotations

import logging

import onnx_graphsurgeon as gs

log = logging.getLogger(__name__)

MAXPOOL_MODES = ("spiking", "average")


def maxpool_to_average(graph: gs.Graph, notes: list[str]) -> None:
    """Replace every MaxPool by an AveragePool of the same window.

    This changes the network's function (the ANN itself computes something else), so it is only
    done on request, with a warning. The default turns MaxPool into the spiking gate instead (``mark_spiking_sites``).
    """
    count = 0
    for node in graph.nodes:
        if node.op != "MaxPool" or len(node.outputs) > 1 and node.outputs[1].outputs:
            continue
        attrs = {k: v for k, v in node.attrs.items()
                 if k in ("auto_pad", "ceil_mode", "kernel_shape", "pads", "strides")}
        attrs["count_include_pad"] = 0
        node.op, node.attrs = "AveragePool", attrs
        while len(node.outputs) > 1:  # graphsurgeon lists do not support slice deletion
            node.outputs.pop()
        count += 1
    if count:
        message = (f"replaced {count} MaxPool node(s) by AveragePool (maxpool=\"average\"): the converted "
                   "network no longer computes the original ANN; its accuracy may differ")
        log.warning(message)
        notes.append(message)
