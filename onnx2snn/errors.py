"""The project's one error hierarchy.

Every failure caused by the user's input (a file, an option, a data set) raises an
``Onnx2SnnError``; the CLI prints its message on one line and exits non-zero. Any other
exception is a bug and keeps its traceback.

An error about one argument of the Python API names it in ``parameter`` (``"max_memory"``,
``"calibration_timesteps"``...) and its message spells that name; the CLI maps it to its flag.
"""
from __future__ import annotations


class Onnx2SnnError(Exception):
    """Base class: something about the input is wrong, and the message says what."""

    def __init__(self, message: str = "", parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class InvalidModelError(Onnx2SnnError):
    """The ONNX file is missing, malformed, hostile, or not a model this tool can convert."""


class UnsupportedOpError(InvalidModelError):
    """The graph holds nodes with no conversion rule. Lists all of them at once."""

    def __init__(self, nodes: list[tuple[str, str, int]], supported: list[str], detail: str = ""):
        self.nodes = nodes
        listed = ", ".join(f"{name!r} ({op_type}, opset {opset})" for name, op_type, opset in nodes)
        message = f"{len(nodes)} unsupported node(s): {listed}"
        if detail:
            message += f"; {detail}"
        message += f". Supported ops: {', '.join(supported)}"
        super().__init__(message)


class DialectVersionError(InvalidModelError):
    """A spiking file written by a newer onnx2snn, in a dialect version this release cannot read."""


class DataError(Onnx2SnnError):
    """A data set is missing, has the wrong layout, or holds corrupt or inconsistent items."""


class ConfigError(Onnx2SnnError):
    """An option or argument is malformed or inconsistent with the model."""


class ResourceError(Onnx2SnnError):
    """A request would exceed a memory or size limit; raised before allocating."""
