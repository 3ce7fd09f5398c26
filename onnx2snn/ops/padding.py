"""Shared padding arithmetic for Conv and the pooling ops."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def explicit_pads(attrs: dict, spatial: list[int], kernel: list[int], strides: list[int],
                  dilations: list[int]) -> list[int]:
    """ONNX pads ``[b1, b2, ..., e1, e2, ...]``, resolving ``auto_pad`` against the input size."""
    rank = len(kernel)
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("NOTSET", ""):
        return list(attrs.get("pads", [0] * (2 * rank)))
    if auto_pad == "VALID":
        return [0] * (2 * rank)
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations):
        out = math.ceil(size / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def split_pads(pads: list[int]) -> tuple[list[int] | None, list[int]]:
    """Symmetric pads go to the torch op; asymmetric ones become an explicit ``F.pad`` first.

    Returns ``(torch_pad_argument_or_None, symmetric_padding)``.
    """
    rank = len(pads) // 2
    begins, ends = pads[:rank], pads[rank:]
    if begins == ends:
        return None, begins
    torch_pads: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends)):
        torch_pads += [b, e]
    return torch_pads, [0] * rank


def pad_input(x: torch.Tensor, torch_pads: list[int] | None, value: float = 0.0) -> torch.Tensor:
    return x if torch_pads is None else F.pad(x, torch_pads, value=value)
