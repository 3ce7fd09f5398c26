"""Schemas of the dialect's ops: their inputs, outputs and attributes with types, defaults and checks.

``onnx.checker`` knows nothing of a custom domain, so these schemas are what checks a spiking
node: the structural checks count inputs with them, the runtime's op classes read their
attributes through them, and the converter writes neuron parameters through ``NeuronParameters``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import onnx

from ..errors import InvalidModelError
from .format import DOMAIN

RESET_MODES = ("subtract", "zero")


def _floats(value: Any) -> np.ndarray:
    return np.asarray(value, dtype=np.float32).reshape(-1)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


_CONVERT: dict[str, Callable[[Any], Any]] = {"floats": _floats, "ints": _ints, "float": float, "int": int,
                                            "string": _text}


@dataclasses.dataclass(frozen=True)
class AttributeSpec:
    """One attribute: ``kind`` is floats | float | int | string; ``default`` None means optional and absent."""

    name: str
    kind: str
    default: Any
    doc: str
    check: Callable[[Any], bool] | None = None
    rule: str = ""  # what ``check`` demands, for the error message

    def read(self, attrs: Mapping[str, Any], fail: Callable[[str], Exception]) -> Any:
        raw = attrs.get(self.name, self.default)
        if raw is None:
            return None
        value = _CONVERT[self.kind](raw)
        if self.check is not None and not self.check(value):
            shown = value.tolist() if isinstance(value, np.ndarray) else value
            raise fail(f"{self.name} must be {self.rule}, not {shown!r}")
        return value


@dataclasses.dataclass(frozen=True)
class OpSchema:
    """A node type of the onnx2snn domain."""

    op_type: str
    since: int  # the dialect version that introduced it
    doc: str
    inputs: tuple[int, int]  # (fewest, most)
    outputs: tuple[int, int]
    attributes: tuple[AttributeSpec, ...] = ()
    domain: str = DOMAIN

    def read(self, attrs: Mapping[str, Any], fail: Callable[[str], Exception]) -> dict[str, Any]:
        """Typed attribute values (defaults filled in), or ``fail(reason)`` raised for a bad one."""
        return {spec.name: spec.read(attrs, fail) for spec in self.attributes}


def _finite(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)))


IF_SCHEMA = OpSchema(
    "IF", since=1, inputs=(1, 1), outputs=(1, 1),
    doc="integrate-and-fire neuron: v += x (+ bias); fire where v >= threshold; output = spikes x threshold",
    attributes=(
        AttributeSpec("threshold", "floats", [1.0], "firing threshold, one value or one per channel",
                      lambda v: v.size > 0 and _finite(v) and bool(np.all(v > 0)), "finite and positive"),
        AttributeSpec("v_init", "floats", [0.0], "initial membrane potential, one value or one per channel",
                      lambda v: v.size > 0 and _finite(v), "finite"),
        AttributeSpec("reset", "string", "subtract", "subtract (soft reset) or zero (hard reset)",
                      lambda v: v in RESET_MODES, f"one of {RESET_MODES}"),
        AttributeSpec("clip_max", "float", None, "the ANN's Clip/ReLU6 ceiling; caps the threshold",
                      lambda v: bool(np.isfinite(v)) and v > 0, "finite and positive"),
        AttributeSpec("bias", "floats", [0.0], "constant current added at every step (calibration)",
                      lambda v: v.size > 0 and _finite(v), "finite"),
        AttributeSpec("signed", "int", 0, "1: negative spikes undo earlier positive ones", lambda v: v in (0, 1),
                      "0 or 1"),
        AttributeSpec("burst", "int", 1, "most spikes one step may fire", lambda v: 1 <= v <= 127,
                      "between 1 and 127"),
    ))

MAXPOOL_SCHEMA = OpSchema(
    "MaxPool", since=2, inputs=(1, 1), outputs=(1, 1),
    doc=("spiking max-pool gate: passes the input of the window member with the highest accumulated input so "
         "far; attributes as the standard MaxPool (kernel_shape, strides, pads, dilations, auto_pad, ceil_mode)"),
    attributes=(
        AttributeSpec("kernel_shape", "ints", None, "window size"),
        AttributeSpec("strides", "ints", None, "window strides"),
        AttributeSpec("pads", "ints", None, "begin and end pads"),
        AttributeSpec("dilations", "ints", None, "window dilations"),
        AttributeSpec("auto_pad", "string", None, "NOTSET, SAME_UPPER, SAME_LOWER or VALID"),
        AttributeSpec("ceil_mode", "int", None, "1: round output sizes up"),
    ))

SCHEMAS: dict[str, OpSchema] = {schema.op_type: schema for schema in (IF_SCHEMA, MAXPOOL_SCHEMA)}


def is_neuron_node(node: onnx.NodeProto) -> bool:
    """Whether a node is a neuron (``onnx2snn.IF``), which calibration gives parameters."""
    return node.domain == DOMAIN and node.op_type == IF_SCHEMA.op_type


@dataclasses.dataclass(frozen=True, eq=False)  # arrays: compare fields with numpy, not ==
class NeuronParameters:
    """What calibration decides for one neuron layer (one value, or one per channel).

    Threshold methods return these as data; the converter writes them into the graph
    (``write_neuron_parameters``) and the runtime reads them from there.
    """

    threshold: np.ndarray
    v_init: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, np.float32))
    bias: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(1, np.float32))
    signed: bool = False
    burst: int = 1

    def __post_init__(self):
        for name in ("threshold", "v_init", "bias"):
            object.__setattr__(self, name, _floats(getattr(self, name)))


@dataclasses.dataclass(frozen=True)
class IFAttributes:
    """Every attribute of one ``onnx2snn.IF`` node, checked."""

    parameters: NeuronParameters
    reset: str
    clip_max: float | None

    @classmethod
    def read(cls, attrs: Mapping[str, Any], where: str) -> IFAttributes:
        def fail(reason: str) -> InvalidModelError:
            return InvalidModelError(f"{where}: {reason}")

        values = IF_SCHEMA.read(attrs, fail)
        if (values["signed"] or values["burst"] > 1) and values["reset"] != "subtract":
            raise fail("signed and burst spikes need reset 'subtract'")
        parameters = NeuronParameters(values["threshold"], values["v_init"], values["bias"], bool(values["signed"]),
                                      values["burst"])
        return cls(parameters, values["reset"], values["clip_max"])


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    for attr in list(node.attribute):
        if attr.name == name:
            node.attribute.remove(attr)
    node.attribute.append(onnx.helper.make_attribute(name, value))


def write_neuron_parameters(model: onnx.ModelProto, parameters: Mapping[str, NeuronParameters]) -> None:
    """Write each neuron's parameters into its ``onnx2snn.IF`` node (keyed by node name).

    ``threshold`` and ``v_init`` are always written; the low-latency extensions only when used, so
    plain graphs stay plain.
    """
    for node in model.graph.node:
        name = node.name or node.output[0]
        if not is_neuron_node(node) or name not in parameters:
            continue
        values = parameters[name]
        _set_attribute(node, "threshold", [float(v) for v in values.threshold])
        _set_attribute(node, "v_init", [float(v) for v in values.v_init])
        if np.abs(values.bias).max() > 0:
            _set_attribute(node, "bias", [float(v) for v in values.bias])
        if values.signed:
            _set_attribute(node, "signed", 1)
        if values.burst > 1:
            _set_attribute(node, "burst", int(values.burst))
