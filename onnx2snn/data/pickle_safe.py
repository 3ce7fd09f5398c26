"""Read CIFAR-10 python batches (pickles) without ever executing code from the file.

The unpickler resolves only the few globals that numpy needs to rebuild an array; any other
global in the stream (``os.system``, ``builtins.eval`` ...) is refused with a ``DataError``.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError

try:  # numpy 2 moved the array internals; both spellings occur in pickles in the wild
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 protocol-2 pickles use to store bytes (``_codecs.encode(str, 'latin1')``);
    only that one encoding is accepted, so no codec machinery can be reached from a file."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _empty_bytes(*args) -> bytes:
    """Python 3 pickles ``b""`` at protocol 2 as a call of ``bytes()``; nothing else is allowed
    (``bytes(10**12)`` would allocate a terabyte)."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments")
    return b""


_NUMPY_GLOBALS = {
    ("_codecs", "encode"): _latin1_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

MAX_BATCH_BYTES = 512 * 1024**2


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = _NUMPY_GLOBALS.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return found


def load_batch(path: Path) -> dict:
    """One CIFAR batch file as a dict with str keys (``data``, ``labels``, ...)."""
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from error
    if size > MAX_BATCH_BYTES:
        raise DataError(f"{path}: {size} bytes is too large for a CIFAR batch")
    try:
        with open(path, "rb") as handle:
            raw = _RestrictedUnpickler(io.BytesIO(handle.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError, UnicodeDecodeError, RecursionError) as error:
        raise DataError(f"{path}: not a valid CIFAR python batch ({error})") from error
    if not isinstance(raw, dict):
        raise DataError(f"{path}: not a valid CIFAR python batch (holds a {type(raw).__name__}, not a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in raw.items()}
