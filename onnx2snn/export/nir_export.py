"""Export a spiking ONNX graph to NIR (the Neuromorphic Intermediate Representation, ``nir`` 1.0).

Layers map to NIR nodes: Conv -> Conv2d, Gemm -> Affine, MatMul -> Linear, Flatten/Reshape ->
Flatten, AveragePool/GlobalAveragePool -> AvgPool2d, Mul by a constant -> Scale, residual Adds ->
several edges into one node (NIR sums a node's inputs), the ResNet shortcut's strided Slice and
channel Pad -> identity 1x1 Conv2d (exact). An ``onnx2snn.IF`` becomes ``IF`` (binary spikes)
followed by ``Scale`` (the spike amplitude, our threshold), which is exact for the amplitude.

What NIR's IF cannot say is never dropped silently (see ``Difference``): the export uses the most
faithful encoding the spec allows and returns a warning per kind of difference, naming the
nodes; ``strict=True`` refuses instead. Our exact semantics go into each node's ``metadata``
(keys ``onnx2snn_*``), so that ``nir_import`` restores the spiking file exactly.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx

from ..errors import ConfigError, InvalidModelError, UnsupportedOpError
from ..ops.padding import explicit_pads
from . import _dialect

META = "onnx2snn_"


class LossyExportError(ConfigError):
    """``--strict``: the graph uses semantics that NIR cannot express exactly."""


def require_nir():
    try:
        import nir
    except ImportError:
        raise ConfigError("NIR export/import needs the 'nir' package: pip install 'onnx2snn[nir]' "
                          "(or pip install 'nir>=1.0.5')") from None
    # our exact semantics ride in each node's metadata, which nir.Conv2d has from 1.0.5 on (sinabs
    # 3.1.3 pins nir<=1.0.4, so the bench extra's environment has the older one)
    if "metadata" not in getattr(nir.Conv2d, "__dataclass_fields__", {}):
        version = getattr(nir, "__version__", "older than 1.0.5")
        raise ConfigError(f"NIR export/import needs nir >= 1.0.5 (installed: {version}): pip install 'nir>=1.0.5', "
                          "in an environment without sinabs 3.1.3, which pins nir<=1.0.4")
    return nir


@dataclasses.dataclass
class Difference:
    """One kind of semantic difference between our graph and what NIR's spec says it means."""

    what: str
    encoding: str
    nodes: list[str] = dataclasses.field(default_factory=list)

    def message(self) -> str:
        names = ", ".join(self.nodes[:4]) + (f" and {len(self.nodes) - 4} more" if len(self.nodes) > 4 else "")
        return f"{self.what} in {len(self.nodes)} node(s) ({names}): {self.encoding}"


_DIFFERENCES = {
    "soft_reset": ("reset by subtraction (soft reset)",
                   ("NIR's IF resets to v_reset, so they are written with v_reset=0 (reset to zero); a reader "
                    "that follows the spec simulates hard reset")),
    "v_init": ("a non-zero initial membrane potential (v_init)",
               "NIR has no initial state; it is kept only in the node metadata"),
    "bias_dropped": ("a constant bias current with no Conv/Affine before it to absorb it",
                     "NIR's IF has no bias; it is kept only in the node metadata"),
    "burst": ("burst spikes (several spikes in one step)",
              "NIR's IF fires at most once per step; written as a binary IF"),
    "signed": ("signed spikes (negative spikes that undo earlier ones)",
               "NIR's IF has no negative spikes; written as a binary IF"),
    "maxpool": ("the spiking max-pool gate",
                ("NIR has no max-pool; written as AvgPool2d (a different network for readers that follow the "
                 "spec), the max-pool attributes kept in the metadata")),
    "avgpool_pads": ("average pooling with padding",
                     "NIR's AvgPool2d does not say whether padded cells count; written as is"),
}


@dataclasses.dataclass
class NirExport:
    graph: object  # nir.NIRGraph
    warnings: list[str]
    notes: list[str]


def _safe(name: str, taken: set[str]) -> str:
    """A NIR node name: no '/' or '.', which HDF5 would read as groups; unique."""
    base = re.sub(r"[^A-Za-z0-9_\-]+", "_", name).strip("_") or "node"
    candidate, i = base, 1
    while candidate in taken:
        candidate, i = f"{base}_{i}", i + 1
    taken.add(candidate)
    return candidate


def _pair(values) -> np.ndarray:
    return np.asarray([int(v) for v in values], dtype=np.int64)


def _symmetric(node, pads: list[int]) -> list[int]:
    rank = len(pads) // 2
    if pads[:rank] != pads[rank:]:
        raise node_error(node, "asymmetric padding")
    return pads[:rank]


class _Unsupported(Exception):
    pass


def node_error(node, reason: str) -> _Unsupported:
    return _Unsupported(f"{node.name or node.output[0]!r} ({node.op_type}): {reason}")


def _broadcast(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-channel (or single) value spread over a neuron shape ``[C, ...]``."""
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    if values.size == 1:
        return np.full(shape, values[0], dtype=np.float32)
    return np.ascontiguousarray(np.broadcast_to(values.reshape([-1] + [1] * (len(shape) - 1)), shape))


class _Builder:
    """The NIR graph under construction: nodes, edges, and which NIR nodes sum to each tensor."""

    def __init__(self):
        self.taken: set[str] = set()
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.sources: dict[str, list[str]] = {}  # ONNX tensor -> NIR nodes whose outputs sum to it
        self.produced_by: dict[str, str] = {}  # NIR node -> the ONNX tensor it produces
        self.differences: dict[str, Difference] = {}
        self.notes: list[str] = []

    def differ(self, kind: str, name: str) -> None:
        what, encoding = _DIFFERENCES[kind]
        self.differences.setdefault(kind, Difference(what, encoding)).nodes.append(name)

    def edge(self, source: str, target: str, onnx_name: str) -> None:
        if (source, target) in self.edges:
            raise _Unsupported(f"{onnx_name!r}: the same tensor enters twice (e.g. Add(x, x))")
        self.edges.append((source, target))

    def add(self, onnx_name: str, node, data_input: str | None, output: str | None) -> str:
        name = _safe(onnx_name, self.taken)
        self.nodes[name] = node
        if data_input is not None:
            for source in self.sources[data_input]:
                self.edge(source, name, onnx_name)
        if output is not None:
            self.sources[output] = [name]
            self.produced_by[name] = output
        return name


def export_nir(model: onnx.ModelProto, strict: bool = False) -> NirExport:
    """The NIR graph of a spiking ONNX model, with a warning per kind of semantic difference."""
    nir = require_nir()
    graph = model.graph
    constants = _dialect.graph_constants(graph)
    shapes = {k: v[1:] for k, v in _dialect.tensor_shapes(model).items()}  # NIR types have no batch axis
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1

    b = _Builder()
    input_name = next(i.name for i in graph.input if i.name not in constants)
    b.add("input", nir.Input(input_type={"input": np.array(shapes[input_name])}), None, input_name)
    unsupported: list[str] = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            continue
        try:
            _export_node(nir, model, node, constants, shapes, consumers, b)
        except _Unsupported as error:
            unsupported.append(str(error))
    if unsupported:
        raise InvalidModelError(f"{len(unsupported)} node(s) NIR cannot express: " + "; ".join(unsupported))

    output_name = graph.output[0].name
    b.add("output", nir.Output(output_type={"output": np.array(shapes[output_name])}), output_name, None)
    metadata = {f"{META}model.{p.key}": p.value for p in model.metadata_props if "/" not in p.key}
    metadata[f"{META}format"] = "onnx2snn NIR export v1"
    warnings = [d.message() for d in b.differences.values()]
    if strict and warnings:
        raise LossyExportError("--strict: NIR cannot express this graph exactly: " + " | ".join(warnings))
    try:
        result = nir.NIRGraph(nodes=b.nodes, edges=b.edges, metadata=metadata, type_check=True)
    except (ValueError, AssertionError) as error:
        raise InvalidModelError(f"NIR rejected the exported graph: {error}") from None
    return NirExport(graph=result, warnings=warnings, notes=b.notes)


def _export_node(nir, model, node, constants, shapes, consumers, b: _Builder) -> None:
    key = node.name or node.output[0]
    attrs = _dialect.node_attrs(node)
    data = node.input[0]
    if data not in b.sources:
        raise node_error(node, f"its input {data!r} is not a signal NIR carries (a constant or an unsupported node)")
    in_shape, out_shape = shapes[data], shapes[node.output[0]]

    if _dialect.is_neuron(node):
        spec = _dialect.neuron_spec(model, node)
        shape = tuple(in_shape)
        # NIR fires at v > v_threshold, we at v >= threshold: the next float32 below θ makes them agree.
        below = np.nextafter(spec.threshold, np.float32(-np.inf)).astype(np.float32)
        metadata = {f"{META}threshold": spec.threshold, f"{META}v_init": spec.v_init,
                    f"{META}bias": spec.bias, f"{META}reset": spec.reset, f"{META}signed": int(spec.signed),
                    f"{META}burst": int(spec.burst), f"{META}name": key,
                    f"{META}rule": "v += x (+ bias); k = [v >= threshold] (burst: clip(floor(v/threshold), 0, burst); "
                                   "signed: negative spikes undo earlier ones); reset: subtract k*threshold or "
                                   "zero; output k*threshold (the Scale node that follows)"}
        if spec.clip_max is not None:
            metadata[f"{META}clip_max"] = float(spec.clip_max)
        if spec.reset == "subtract":
            b.differ("soft_reset", key)
        if spec.has_v_init:
            b.differ("v_init", key)
        if spec.burst > 1:
            b.differ("burst", key)
        if spec.signed:
            b.differ("signed", key)
        if spec.has_bias:
            target = _bias_target(b.nodes, b.sources[data], b.produced_by, consumers, nir)
            if target is None:
                b.differ("bias_dropped", key)
            else:
                layer = b.nodes[target]
                layer.metadata.setdefault(f"{META}bias", np.asarray(layer.bias, np.float32).copy())
                channels = layer.bias.shape[0]
                layer.bias = (layer.bias + _broadcast(spec.bias, (channels,))).astype(np.float32)
                metadata[f"{META}bias_folded_into"] = target
                b.notes.append(f"{key}: bias current folded into the bias of {target} (exact in real arithmetic; "
                             "float32 rounding may differ in the last bit)")
        neuron = nir.IF(r=np.ones(shape, np.float32), v_threshold=_broadcast(below, shape),
                        v_reset=np.zeros(shape, np.float32), metadata=metadata)
        name = b.add(key, neuron, data, None)
        scale = nir.Scale(scale=_broadcast(spec.threshold, shape), metadata={f"{META}role": "spike_amplitude"})
        scale_name = b.add(f"{key}_amplitude", scale, None, node.output[0])
        b.edge(name, scale_name, key)
        return

    op = node.op_type
    if op == "Conv":
        weight = constants.get(node.input[1])
        if weight is None or weight.ndim != 4:
            raise node_error(node, "only 2-D convolutions with constant weights")
        bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            raise node_error(node, "computed bias")
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        pads = _symmetric(node, explicit_pads(attrs, list(in_shape[1:]), list(weight.shape[2:]), strides, dilations))
        layer = nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=weight.astype(np.float32),
                           stride=tuple(strides), padding=tuple(pads), dilation=tuple(dilations),
                           groups=int(attrs.get("group", 1)),
                           bias=(np.zeros(weight.shape[0], np.float32) if bias is None else bias.astype(np.float32)))
        b.add(key, layer, data, node.output[0])
    elif op == "Gemm":
        weight = constants.get(node.input[1])
        if attrs.get("transA", 0) or weight is None or len(in_shape) != 1:
            raise node_error(node, "only x @ W (+ b) on a flat input with constant W")
        weight = (weight if attrs.get("transB", 0) else weight.T) * np.float32(attrs.get("alpha", 1.0))
        bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else np.broadcast_to(
            bias * np.float32(attrs.get("beta", 1.0)), (weight.shape[0],))
        b.add(key, nir.Affine(weight=np.ascontiguousarray(weight, np.float32), bias=np.asarray(bias, np.float32)),
            data, node.output[0])
    elif op == "MatMul":
        weight = constants.get(node.input[1])
        if weight is None or weight.ndim != 2 or len(in_shape) != 1:
            raise node_error(node, "only a flat input times a constant matrix")
        b.add(key, nir.Linear(weight=np.ascontiguousarray(weight.T, np.float32)), data, node.output[0])
    elif op in ("Flatten", "Reshape"):
        if len(out_shape) != 1:
            raise node_error(node, f"only flattening to [batch, features], not {list(out_shape)}")
        b.add(key, nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1), data,
            node.output[0])
    elif op in ("AveragePool", "GlobalAveragePool", "MaxPool"):
        if len(in_shape) != 3:
            raise node_error(node, "only 2-D pooling")
        if op == "GlobalAveragePool":
            kernel, strides, pads = list(in_shape[1:]), list(in_shape[1:]), [0, 0]
        else:
            kernel = list(attrs["kernel_shape"])
            strides = list(attrs.get("strides", [1, 1]))
            dilations = list(attrs.get("dilations", [1, 1]))
            if attrs.get("ceil_mode", 0) or dilations != [1, 1]:
                raise node_error(node, "ceil_mode and dilations are not expressible")
            pads = _symmetric(node, explicit_pads(attrs, list(in_shape[1:]), kernel, strides, dilations))
        metadata = {}
        if op == "MaxPool":
            b.differ("maxpool", key)
            metadata = {f"{META}op": "MaxPool", f"{META}kernel_shape": _pair(kernel),
                        f"{META}strides": _pair(strides), f"{META}pads": _pair(pads + pads)}
        elif any(pads):
            b.differ("avgpool_pads", key)
            metadata = {f"{META}count_include_pad": int(attrs.get("count_include_pad", 0))}
        b.add(key, nir.AvgPool2d(kernel_size=_pair(kernel), stride=_pair(strides), padding=_pair(pads),
                               metadata=metadata), data, node.output[0])
    elif op == "Add":
        other = node.input[1]
        if other not in b.sources:
            raise node_error(node, "adding a constant (only sums of two signals are expressible)")
        b.sources[node.output[0]] = b.sources[data] + b.sources[other]
    elif op == "Mul":
        factor = constants.get(node.input[1])
        if factor is None:
            raise node_error(node, "only multiplication by a constant")
        b.add(key, nir.Scale(scale=np.ascontiguousarray(np.broadcast_to(factor.astype(np.float32), in_shape))),
            data, node.output[0])
    elif op == "Slice":
        b.add(key, _slice_as_conv(nir, node, constants, in_shape, out_shape), data, node.output[0])
    elif op == "Pad":
        b.add(key, _pad_as_conv(nir, node, constants, attrs, in_shape, out_shape), data, node.output[0])
    elif op == "Identity":
        b.sources[node.output[0]] = b.sources[data]
    else:
        raise node_error(node, "no NIR equivalent")


def _bias_target(nodes, sources, produced_by, consumers, nir):
    """A Conv2d/Affine among the neuron's input sources whose output feeds nothing else."""
    for source in sources:
        layer = nodes[source]
        if isinstance(layer, (nir.Conv2d, nir.Affine)) and consumers.get(produced_by.get(source), 0) == 1 \
                and not layer.metadata.get(f"{META}op"):
            return source
    return None


def _identity_conv(nir, weight: np.ndarray, in_shape, stride, metadata) -> object:
    return nir.Conv2d(input_shape=tuple(int(v) for v in in_shape[1:]), weight=weight, stride=tuple(stride),
                      padding=(0, 0), dilation=(1, 1), groups=1, bias=np.zeros(weight.shape[0], np.float32),
                      metadata=metadata)


def _slice_as_conv(nir, node, constants, in_shape, out_shape):
    """x[:, :, ::s, ::t] as a 1x1 identity Conv2d with stride (s, t): exact."""
    values = [constants.get(n) if n else None for n in node.input[1:]]
    if any(v is None for v in values[:2]) or any(n and v is None for n, v in zip(node.input[1:], values)):
        raise node_error(node, "only constant slices")
    starts, ends = values[0], values[1]
    axes = values[2] if len(values) > 2 and values[2] is not None else np.arange(len(starts))
    steps = values[3] if len(values) > 3 and values[3] is not None else np.ones(len(starts), np.int64)
    stride = [1, 1]
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) + 4 if axis < 0 else int(axis)
        if axis not in (2, 3) or start != 0 or step < 1 or end < in_shape[axis - 1]:
            raise node_error(node, "only strided subsampling of the spatial axes from index 0")
        stride[axis - 2] = int(step)
    channels = in_shape[0]
    weight = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    return _identity_conv(nir, weight, in_shape, stride, {f"{META}op": "Slice"})


def _pad_as_conv(nir, node, constants, attrs, in_shape, out_shape):
    """Zero-padding of the channel axis as a 1x1 Conv2d that places the identity: exact."""
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pads = constants.get(node.input[1]) if len(node.input) > 1 else np.asarray(attrs.get("pads", []))
    value = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(())
    if mode != "constant" or pads is None or value is None or float(np.asarray(value).reshape(-1)[0]) != 0.0:
        raise node_error(node, "only constant zero padding")
    pads = [int(p) for p in pads]
    if len(pads) != 8 or any(p != 0 for i, p in enumerate(pads) if i not in (1, 5)) or min(pads) < 0:
        raise node_error(node, "only zero-padding of the channel axis")
    before, channels = pads[1], in_shape[0]
    weight = np.zeros((out_shape[0], channels, 1, 1), np.float32)
    weight[before + np.arange(channels), np.arange(channels), 0, 0] = 1.0
    return _identity_conv(nir, weight, in_shape, (1, 1), {f"{META}op": "Pad"})


def write_nir(result: NirExport, path) -> None:
    nir = require_nir()
    nir.write(str(path), result.graph)


def supported_ops() -> list[str]:
    return ["Conv", "Gemm", "MatMul", "Flatten", "Reshape", "AveragePool", "GlobalAveragePool", "MaxPool", "Add",
            "Mul", "Slice", "Pad", "Identity", "onnx2snn.IF"]


__all__ = ["LossyExportError", "NirExport", "UnsupportedOpError", "export_nir", "require_nir", "write_nir"]
