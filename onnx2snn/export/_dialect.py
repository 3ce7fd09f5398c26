"""The one place where the exporters read the spiking-ONNX dialect.

Everything the exporters need to know about a spiking file (how to load it, which nodes are
neurons or spiking max-pools, what each IF attribute means) goes through this module, which
delegates to the dialect package (``dialect.read_spiking``, which also upgrades older files) and
the op classes (``ops.neurons.IF``, the op registry).
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import onnx
import torch

from .. import ops
from ..dialect import DIALECT_VERSION as SNN_OPSET
from ..dialect import DOMAIN as SNN_DOMAIN
from ..dialect import read_spiking
from ..errors import InvalidModelError
from ..ops.neurons import IF
from ..runtime.network import SpikingNetwork, _opsets, graph_constants, node_info

__all__ = [
    "SNN_DOMAIN",
    "SNN_OPSET",
    "NeuronSpec",
    "Partition",
    "default_opset",
    "graph_constants",
    "is_neuron",
    "is_spiking_maxpool",
    "load_spiking",
    "neuron_spec",
    "node_attrs",
    "partition",
]


@dataclasses.dataclass(frozen=True)
class NeuronSpec:
    """The exact parameters of one ``onnx2snn.IF`` node, as the runtime interprets them."""

    threshold: np.ndarray  # float32, one value or one per channel
    v_init: np.ndarray
    bias: np.ndarray
    reset: str  # "subtract" | "zero"
    signed: bool
    burst: int
    clip_max: float | None

    @property
    def extended(self) -> bool:
        return self.signed or self.burst > 1

    @property
    def has_bias(self) -> bool:
        return bool(np.any(self.bias != 0))

    @property
    def has_v_init(self) -> bool:
        return bool(np.any(self.v_init != 0))


def load_spiking(path: str | os.PathLike) -> onnx.ModelProto:
    """Load, validate and upgrade a spiking ONNX file with the project's loader."""
    return read_spiking(path)


def default_opset(model: onnx.ModelProto) -> int:
    return _opsets(model).get("", 1)


def node_attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _info(model: onnx.ModelProto, node: onnx.NodeProto) -> ops.NodeInfo:
    return node_info(node, _opsets(model), graph_constants(model.graph))


def is_neuron(node: onnx.NodeProto) -> bool:
    return node.domain == SNN_DOMAIN and node.op_type == "IF"


def is_spiking_maxpool(node: onnx.NodeProto) -> bool:
    return node.domain == SNN_DOMAIN and node.op_type == "MaxPool"


def neuron_spec(model: onnx.ModelProto, node: onnx.NodeProto) -> NeuronSpec:
    """Parse an IF node with the runtime's own attribute parsing (validation included)."""
    neuron = IF(_info(model, node))
    return NeuronSpec(threshold=neuron.threshold.numpy().copy(), v_init=neuron.v_init.numpy().copy(),
                      bias=neuron.bias.numpy().copy(), reset=neuron.reset, signed=neuron.signed,
                      burst=neuron.burst, clip_max=neuron.clip_max)


def neuron_attributes(spec: NeuronSpec) -> dict:
    """The IF node attributes that encode ``spec`` (the inverse of ``neuron_spec``)."""
    attrs = {"threshold": [float(v) for v in spec.threshold], "v_init": [float(v) for v in spec.v_init],
             "reset": spec.reset}
    if spec.has_bias:
        attrs["bias"] = [float(v) for v in spec.bias]
    if spec.signed:
        attrs["signed"] = 1
    if spec.burst > 1:
        attrs["burst"] = int(spec.burst)
    if spec.clip_max is not None:
        attrs["clip_max"] = float(spec.clip_max)
    return attrs


def is_stateful(model: onnx.ModelProto, node: onnx.NodeProto) -> bool:
    opsets = _opsets(model)
    domain = "" if node.domain == "ai.onnx" else node.domain
    cls = ops.lookup(domain, node.op_type, opsets.get(domain, 1))
    if cls is None or not issubclass(cls, ops.Op):
        raise InvalidModelError(f"node {node.name!r} ({node.op_type}) cannot run in the spiking runtime")
    return bool(cls.stateful)


@dataclasses.dataclass
class Partition:
    """The graph split as the runtime splits it: static nodes (input and weights only, computed
    once) and dynamic nodes (run every timestep)."""

    static: list[onnx.NodeProto]
    dynamic: list[onnx.NodeProto]
    static_names: set[str]


def partition(model: onnx.ModelProto) -> Partition:
    graph = model.graph
    constants = graph_constants(graph)
    static_names = set(constants) | {i.name for i in graph.input} | {""}
    static, dynamic = [], []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            static.append(node)
            continue
        if not is_stateful(model, node) and all(n in static_names for n in node.input):
            static.append(node)
            static_names.update(node.output)
        else:
            dynamic.append(node)
    return Partition(static=static, dynamic=dynamic, static_names=static_names)


def input_shape(model: onnx.ModelProto, batch: int = 1) -> list[int]:
    """The graph input's shape with the batch set to ``batch``; other dimensions must be fixed."""
    constants = graph_constants(model.graph)
    inputs = [i for i in model.graph.input if i.name not in constants]
    if len(inputs) != 1:
        raise InvalidModelError(f"the graph must have one input, not {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [batch] + [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]]
    if not dims or min(shape) < 1:
        raise InvalidModelError(f"input {inputs[0].name!r} needs fixed non-batch dimensions to export, "
                                f"not {shape[1:]}")
    return shape


def tensor_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor for a batch of one, found by running the graph's ANN meaning
    in the runtime (which knows the custom nodes that ONNX shape inference does not)."""
    env = SpikingNetwork(model).analog_tensors(torch.zeros(input_shape(model)))
    return {name: tuple(value.shape) for name, value in env.items() if hasattr(value, "shape")}
