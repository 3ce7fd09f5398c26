"""Import a NIR graph as a spiking ONNX file that the onnx2snn runtime runs.

Graphs written by ``nir_export`` come back exactly: each node's ``onnx2snn_*`` metadata restores
the IF parameters (reset, v_init, bias, burst, signed, clip_max), the spiking max-pool and the
original biases. Plain feed-forward NIR graphs of the supported node types (Input, Output,
Conv2d, Affine, Linear, Flatten, AvgPool2d, SumPool2d, Scale, IF) follow the NIR spec:

- IF: v += r·I; spike when v > v_threshold; v <- v_reset (which must be 0: our hard reset).
  It becomes Mul(r) (when r != 1) -> ``onnx2snn.IF`` (reset zero, threshold = the next float32
  above v_threshold, so that our v >= threshold is NIR's v > v_threshold) -> Div(threshold), so
  the output is NIR's binary spike. Thresholds may differ per channel, not within a channel.
- Several edges into one node are summed (Add).
Any other node type ends in one error listing every unsupported node.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import InvalidModelError
from . import _dialect
from .nir_export import META, require_nir

SUPPORTED = ("Input", "Output", "Conv2d", "Affine", "Linear", "Flatten", "AvgPool2d", "SumPool2d", "Scale", "IF")


def read_nir(path) -> object:
    nir = require_nir()
    try:
        return nir.read(str(path))
    except FileNotFoundError:
        raise InvalidModelError(f"{path}: no such file") from None
    except (OSError, ValueError, KeyError, AssertionError, TypeError) as error:
        raise InvalidModelError(f"{path}: not a readable NIR file ({type(error).__name__}: {error})") from None


def _meta(node, key, default=None):
    return node.metadata.get(META + key, default) if isinstance(node.metadata, dict) else default


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _order(graph) -> list[str]:
    incoming = {name: 0 for name in graph.nodes}
    for _, target in graph.edges:
        incoming[target] += 1
    ready = sorted(n for n, k in incoming.items() if k == 0)
    order = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for source, target in graph.edges:
            if source == name:
                incoming[target] -= 1
                if incoming[target] == 0:
                    ready.append(target)
    if len(order) != len(graph.nodes):
        raise InvalidModelError("the NIR graph has a cycle (recurrent graphs are not supported)")
    return order


def _channel_values(values: np.ndarray, what: str, name: str) -> np.ndarray:
    """A per-neuron array ``[C, ...]`` as one value per channel (or one value), if it is that."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 0 or np.all(values == values.reshape(-1)[0]):
        return values.reshape(-1)[:1]
    per_channel = values.reshape(values.shape[0], -1)
    if values.ndim > 1 and np.all(per_channel == per_channel[:, :1]):
        return per_channel[:, 0].copy()
    raise InvalidModelError(f"NIR node {name!r}: {what} varies within a channel, which onnx2snn.IF cannot hold")


def _view(values: np.ndarray, rank: int) -> np.ndarray:
    """Per-channel values shaped to broadcast over ``[N, C, ...]`` of the given rank (batch included)."""
    values = np.asarray(values, np.float32).reshape(-1)
    return values.reshape(()) if values.size == 1 else values.reshape([-1] + [1] * (rank - 2))


class _Writer:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._n = 0

    def const(self, value, dtype=np.float32) -> str:
        self._n += 1
        name = f"nir/const{self._n}"
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def node(self, op_type, inputs, name, domain="", **attrs) -> str:
        out = f"{name}_out" if not any(n.output[0] == f"{name}_out" for n in self.nodes) else f"{name}_out{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, domain=domain or None, **attrs))
        return out


def import_nir(graph, use_metadata: bool = True) -> onnx.ModelProto:
    """A spiking ONNX model equivalent to the NIR graph (see the module docstring).

    ``use_metadata=False`` ignores our ``onnx2snn_*`` metadata and reads the graph as the NIR spec
    says, as any other NIR reader would: this measures what an export loses elsewhere."""
    nir = require_nir()
    if not use_metadata:
        graph = copy.deepcopy(graph)
        for node in graph.nodes.values():
            node.metadata = {k: v for k, v in (node.metadata or {}).items() if not k.startswith(META)}
    bad = [f"{name!r} ({type(node).__name__})" for name, node in graph.nodes.items()
           if type(node).__name__ not in SUPPORTED]
    if bad:
        raise InvalidModelError(f"{len(bad)} unsupported NIR node(s): {', '.join(bad)}. "
                                f"Supported: {', '.join(SUPPORTED)}")
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidModelError(f"the NIR graph must have one Input and one Output, "
                                f"not {len(inputs)} and {len(outputs)}")
    predecessors = {name: [s for s, t in graph.edges if t == name] for name in graph.nodes}
    w = _Writer()
    tensors: dict[str, str] = {}
    input_shape = [int(v) for v in graph.nodes[inputs[0]].input_type["input"]]
    ranks: dict[str, int] = {}

    for name in _order(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            tensors[name] = "input"
            ranks[name] = 1 + len(input_shape)
            continue
        sources = predecessors[name]
        if not sources:
            raise InvalidModelError(f"NIR node {name!r} has no input")
        x = tensors[sources[0]]
        for other in sources[1:]:
            x = w.node("Add", [x, tensors[other]], f"{name}_sum")
        rank = ranks[sources[0]]
        tensors[name], ranks[name] = _import_node(nir, w, name, node, x, rank, graph, predecessors)

    output_node = graph.nodes[outputs[0]]
    out_shape = ["N"] + [int(v) for v in output_node.output_type["output"]]
    w.nodes.append(helper.make_node("Identity", [tensors[outputs[0]]], ["output"], name="output"))
    onnx_graph = helper.make_graph(
        w.nodes, "nir_import", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N"] + input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)], initializer=w.initializers)
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", 13),
                                                         helper.make_opsetid(_dialect.SNN_DOMAIN, _dialect.SNN_OPSET)],
                              producer_name="onnx2snn-nir-import")
    model.ir_version = 8
    metadata = {"onnx2snn.imported_from": "nir"}
    for key, value in (graph.metadata or {}).items():
        if key.startswith(f"{META}model."):  # the spiking file's metadata_props, kept by our export
            metadata[key[len(f"{META}model."):]] = _text(value)
    metadata["onnx2snn.imported_from"] = "nir"
    for key, value in sorted(metadata.items()):
        model.metadata_props.add(key=key, value=value)
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # noqa: BLE001 - the checker raises several types
        raise InvalidModelError(f"the imported graph is not valid ONNX ({error})") from None
    return model


def _import_node(nir, w: _Writer, name, node, x, rank, graph, predecessors) -> tuple[str, int]:
    if isinstance(node, nir.Output):
        return x, rank
    if isinstance(node, nir.IF):
        return _import_if(w, name, node, x, rank)
    if isinstance(node, nir.Scale):
        if _text(_meta(node, "role", "")) == "spike_amplitude" and all(
                isinstance(graph.nodes[p], nir.IF) and _meta(graph.nodes[p], "threshold") is not None
                for p in predecessors[name]):
            return x, rank  # our IF already outputs spike x threshold
        return w.node("Mul", [x, w.const(node.scale)], name), rank
    if isinstance(node, nir.Conv2d):
        weight = np.asarray(node.weight, np.float32)
        kernel, dilation = list(weight.shape[2:]), [int(v) for v in np.broadcast_to(node.dilation, 2)]
        if isinstance(node.padding, str) or (isinstance(node.padding, np.ndarray) and node.padding.dtype.kind in "SUO"):
            padding = _text(node.padding if isinstance(node.padding, str) else node.padding.reshape(-1)[0])
            totals = [d * (k - 1) for d, k in zip(dilation, kernel)] if padding == "same" else [0, 0]
            pads = [t // 2 for t in totals] + [t - t // 2 for t in totals]
        else:
            pads = [int(v) for v in np.broadcast_to(node.padding, 2)] * 2
        bias = _meta(node, "bias", node.bias)
        return w.node("Conv", [x, w.const(weight), w.const(np.asarray(bias, np.float32))], name,
                      kernel_shape=kernel, strides=[int(v) for v in np.broadcast_to(node.stride, 2)], pads=pads,
                      dilations=dilation, group=int(node.groups)), rank
    if isinstance(node, (nir.Affine, nir.Linear)):
        if rank != 2:
            raise InvalidModelError(f"NIR node {name!r} ({type(node).__name__}) needs a flat input; add a Flatten")
        inputs = [x, w.const(np.asarray(node.weight, np.float32))]
        if isinstance(node, nir.Affine):
            inputs.append(w.const(np.asarray(_meta(node, "bias", node.bias), np.float32)))
        return w.node("Gemm", inputs, name, transB=1), rank
    if isinstance(node, nir.Flatten):
        out_type = [int(v) for v in node.output_type["output"]]
        if len(out_type) == 1:
            return w.node("Flatten", [x], name, axis=1), 2
        return w.node("Reshape", [x, w.const([-1] + out_type, np.int64)], name), 1 + len(out_type)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        kernel = [int(v) for v in np.broadcast_to(node.kernel_size, 2)]
        strides = [int(v) for v in np.broadcast_to(node.stride, 2)]
        pads = [int(v) for v in np.broadcast_to(node.padding, 2)] * 2
        if _text(_meta(node, "op", "")) == "MaxPool":
            return w.node("MaxPool", [x], name, domain=_dialect.SNN_DOMAIN,
                          kernel_shape=[int(v) for v in _meta(node, "kernel_shape")],
                          strides=[int(v) for v in _meta(node, "strides")],
                          pads=[int(v) for v in _meta(node, "pads")]), rank
        if isinstance(node, nir.AvgPool2d):
            include = int(_meta(node, "count_include_pad", 1))
            return w.node("AveragePool", [x], name, kernel_shape=kernel, strides=strides, pads=pads,
                          count_include_pad=include), rank
        channels = int(node.input_type["input"][0])
        ones = np.ones((channels, 1, *kernel), np.float32)  # a depthwise all-ones conv sums each window
        return w.node("Conv", [x, w.const(ones)], name, kernel_shape=kernel, strides=strides, pads=pads,
                      group=channels), rank
    raise InvalidModelError(f"NIR node {name!r}: unsupported type {type(node).__name__}")


def _import_if(w: _Writer, name, node, x, rank) -> tuple[str, int]:
    threshold = _meta(node, "threshold")
    if threshold is not None:  # our own export: the exact parameters
        spec = _dialect.NeuronSpec(
            threshold=np.asarray(threshold, np.float32).reshape(-1),
            v_init=np.asarray(_meta(node, "v_init", [0.0]), np.float32).reshape(-1),
            bias=np.asarray(_meta(node, "bias", [0.0]), np.float32).reshape(-1),
            reset=_text(_meta(node, "reset", "subtract")), signed=bool(int(_meta(node, "signed", 0))),
            burst=int(_meta(node, "burst", 1)),
            clip_max=float(_meta(node, "clip_max")) if _meta(node, "clip_max") is not None else None)
        return w.node("IF", [x], name, domain=_dialect.SNN_DOMAIN, **_dialect.neuron_attributes(spec)), rank
    r = np.asarray(node.r, np.float32)
    if np.any(np.asarray(node.v_reset) != 0):
        raise InvalidModelError(f"NIR node {name!r}: IF with a non-zero v_reset; onnx2snn.IF resets to 0")
    if not np.all(r == 1):
        x = w.node("Mul", [x, w.const(_view(_channel_values(r, "r", name), rank))], f"{name}_r")
    threshold = _channel_values(node.v_threshold, "v_threshold", name)
    if np.any(threshold <= 0):
        raise InvalidModelError(f"NIR node {name!r}: v_threshold must be positive")
    above = np.nextafter(threshold, np.float32(np.inf)).astype(np.float32)  # v >= above  <=>  v > v_threshold
    spec = _dialect.NeuronSpec(threshold=above, v_init=np.zeros(1, np.float32), bias=np.zeros(1, np.float32),
                               reset="zero", signed=False, burst=1, clip_max=None)
    spikes = w.node("IF", [x], name, domain=_dialect.SNN_DOMAIN, **_dialect.neuron_attributes(spec))
    return w.node("Div", [spikes, w.const(_view(above, rank))], f"{name}_binary"), rank
