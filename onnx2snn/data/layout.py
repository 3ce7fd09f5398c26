"""The memory layout a model expects for its input images: NCHW (PyTorch) or NHWC (TensorFlow/Keras).

A Keras model exported by tf2onnx declares an input ``[N, 32, 32, 3]`` and transposes it to NCHW
inside the graph. The data readers always produce NCHW tensors; ``to_layout`` hands the model the
layout it declares.
"""
from __future__ import annotations

from collections import deque

import onnx
import torch

from ..errors import ConfigError

LAYOUTS = ("nchw", "nhwc")
# channel counts of image inputs: grey, RGB, RGBA
_IMAGE_CHANNELS = (1, 3, 4)
# ops that preprocessing applies elementwise before the layout change (x - mean) * scale
_ELEMENTWISE = {"Sub", "Add", "Mul", "Div", "Cast", "Identity"}
_NHWC_TO_NCHW = [0, 3, 1, 2]


def _input(model: onnx.ModelProto) -> onnx.ValueInfoProto | None:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    return inputs[0] if len(inputs) == 1 else None


def _declared_dims(value: onnx.ValueInfoProto) -> list[int | None] | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]


def _transposed_to_nchw(model: onnx.ModelProto, name: str) -> bool:
    """Whether the input reaches a Transpose(perm 0,3,1,2) through elementwise preprocessing only."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for source in node.input:
            readers.setdefault(source, []).append(node)
    queue, seen = deque([name]), {name}
    while queue:
        for node in readers.get(queue.popleft(), []):
            if node.op_type == "Transpose":
                perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
                if perm == _NHWC_TO_NCHW:
                    return True
            elif node.op_type in _ELEMENTWISE:
                for output in node.output:
                    if output not in seen:
                        seen.add(output)
                        queue.append(output)
    return False


def detect_layout(model: onnx.ModelProto) -> str:
    """``"nhwc"`` when the declared input is ``[N, H, W, C]`` with C in (1, 3, 4) last; ``"nchw"``
    when it is ``[N, C, H, W]``. Where the shape does not tell (none declared, or tiny images such
    as ``[N, 4, 4, 3]``), an input transposed to NCHW first thing (tf2onnx) means NHWC, and
    otherwise three channels last do."""
    value = _input(model)
    if value is None:
        return "nchw"
    dims = _declared_dims(value)
    if dims is not None and len(dims) != 4:
        return "nchw"
    first, last = (dims[1], dims[3]) if dims is not None else (None, None)
    if last in _IMAGE_CHANNELS and first not in _IMAGE_CHANNELS:
        return "nhwc"
    if first in _IMAGE_CHANNELS and last not in _IMAGE_CHANNELS:
        return "nchw"
    if _transposed_to_nchw(model, value.name):
        return "nhwc"
    return "nhwc" if last == 3 and first != 3 else "nchw"


def resolve_layout(model: onnx.ModelProto, requested: str | None) -> str:
    """``requested`` (``nchw`` | ``nhwc``), or the layout detected from the graph for ``auto``/None."""
    if requested is None or requested == "auto":
        return detect_layout(model)
    layout = str(requested).lower()
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout must be auto, nchw or nhwc, not {requested!r}")
    return layout


def to_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """Normalized NCHW images in the layout the model takes."""
    if layout == "nchw":
        return x
    if layout == "nhwc":
        return x.permute(0, 2, 3, 1).contiguous()
    raise ConfigError(f"--layout must be nchw or nhwc, not {layout!r}")
