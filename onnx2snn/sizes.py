"""Byte sizes: parsing a memory budget such as ``"4GB"`` and printing sizes (no torch, no onnx)."""
from __future__ import annotations

import re

from .errors import ConfigError

DEFAULT_MAX_MEMORY = 4 * 1024**3
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}


def parse_size(text: str | int | None) -> int:
    """``"4GB"``, ``"512MiB"``, ``"1.5G"`` or a number of bytes; binary units (1 GB = 2**30 bytes)."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else None
        if not match or unit not in _UNITS:
            raise ConfigError(f"max_memory must be a size such as 4GB or 512MB, not {text!r}", parameter="max_memory")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"max_memory must be positive, not {text!r}", parameter="max_memory")
    return value


def format_bytes(size: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover
