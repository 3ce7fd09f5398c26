"""The op registry: one class per supported ONNX op, shared by the converter and the runtime.

A class declares what it is (domain, op_type, the first opset it supports, notes for the docs),
what the checks and passes need to know about it (how many inputs it takes, which inputs are
weights, the layout of its weight, whether it has a pooling/convolution window) and how it runs
on torch tensors. The converter asks the registry whether a graph is convertible; the runtime
asks it how to execute each node. A new op is one new class (plus a case in tests/op_cases.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..dialect import OpSchema
from ..errors import InvalidModelError

MANY = 1 << 16  # "any number of inputs" (Concat)


@dataclasses.dataclass
class NodeInfo:
    """What an op needs to know about its node: attributes, opset and constant inputs."""

    name: str
    op_type: str
    domain: str
    opset: int
    attrs: dict[str, Any]
    inputs: list[str]
    outputs: list[str]
    constants: dict[int, np.ndarray]

    def const(self, index: int, what: str) -> np.ndarray:
        """The constant value of input ``index``, or a clear error when it is computed at run time."""
        if index >= len(self.inputs) or not self.inputs[index]:
            raise InvalidModelError(f"node {self.name!r} ({self.op_type}) lacks its {what} input")
        if index not in self.constants:
            raise InvalidModelError(
                f"node {self.name!r} ({self.op_type}): {what} must be a constant, "
                "but it is computed in the graph")
        return self.constants[index]

    def optional_const(self, index: int, what: str) -> np.ndarray | None:
        if index >= len(self.inputs) or not self.inputs[index]:
            return None
        return self.const(index, what)

    def fail(self, reason: str) -> InvalidModelError:
        return InvalidModelError(f"node {self.name!r} ({self.op_type}): {reason}")


class WeightLayout:
    """Where a weighted op keeps its channels in its weight (input 1) and bias (input 2), for folding
    per-channel affines into it."""

    def axes(self, attrs: dict[str, Any], weight_ndim: int) -> tuple[int, int] | None:
        """(output-channel axis, input-channel axis) of the weight, or None when it cannot be folded."""
        raise NotImplementedError


class Declared:
    """What the registry knows about an op without running it (class attributes only)."""

    domain: ClassVar[str] = ""
    op_type: ClassVar[str] = ""
    since: ClassVar[int] = 1  # first opset of ``domain`` that this class implements
    notes: ClassVar[str] = ""
    inputs: ClassVar[tuple[int, int]] = (1, 1)  # fewest and most inputs of a node (optional ones included)
    weights: ClassVar[tuple[int, ...]] = ()  # input positions that, when constant, must be float weights
    layout: ClassVar[WeightLayout | None] = None  # weighted ops into which affines fold
    windowed: ClassVar[bool] = False  # kernel_shape / strides / pads / dilations attributes to check
    schema: ClassVar[OpSchema | None] = None  # ops of the onnx2snn dialect

    @classmethod
    def weight_shape_problem(cls, shapes: list[list[int] | None]) -> str | None:
        """What is wrong with the shapes of a node's constant inputs (None where not constant), if anything."""
        return None


class Op(Declared, nn.Module):
    """A stateless op: ``forward`` maps input tensors to the output tensor(s)."""

    stateful: ClassVar[bool] = False

    def __init__(self, node: NodeInfo):
        super().__init__()
        self.node = node


class StatefulOp(Op):
    """An op with state over timesteps (a neuron, a spiking max-pool).

    ``analog`` gives the ANN's meaning, used for calibration and checking the canonical graph.
    ``step`` advances one timestep: ``(state, inputs) -> (output, state)``; state ``None`` is
    the initial state. The network owns the state, so one op can serve many simulations.
    """

    stateful = True
    # A neuron has a threshold that calibration sets; other stateful ops (the spiking max-pool) do not.
    neuron: ClassVar[bool] = True

    def analog(self, *inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def step(self, state: Any, *inputs: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.analog(*inputs)

    def spike_events(self, out: torch.Tensor) -> float:
        """How many spikes one step's output holds (for spike statistics)."""
        return float((out != 0).sum())


class RewrittenOp(Declared):
    """An op the converter accepts but rewrites away (folds, drops or turns into a neuron).

    It never reaches the runtime; the class records what happens to it for the op table.
    """


_REGISTRY: dict[tuple[str, str], list[type]] = {}


def register(cls: type) -> type:
    """Class decorator: add an op class to the registry under (domain, op_type)."""
    if cls.schema is not None:  # a dialect op: its arity and first version come from the dialect's schema
        cls.domain, cls.op_type, cls.since, cls.inputs = cls.schema.domain, cls.schema.op_type, cls.schema.since, \
            cls.schema.inputs
    versions = _REGISTRY.setdefault((cls.domain, cls.op_type), [])
    versions.append(cls)
    versions.sort(key=lambda c: c.since)
    return cls


def lookup(domain: str, op_type: str, opset: int) -> type | None:
    """The class for this node, or None. ``ai.onnx`` and ``""`` name the same domain."""
    domain = "" if domain == "ai.onnx" else domain
    candidates = [c for c in _REGISTRY.get((domain, op_type), []) if c.since <= opset]
    return candidates[-1] if candidates else None


def registered() -> list[type]:
    """All op classes, sorted by domain and op_type (for error messages and the op table)."""
    return [c for key in sorted(_REGISTRY) for c in _REGISTRY[key]]


def supported_names() -> list[str]:
    return sorted({c.op_type if not c.domain else f"{c.domain}.{c.op_type}" for c in registered()})


def as_int_list(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]

