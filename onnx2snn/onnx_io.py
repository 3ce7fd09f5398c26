"""Reading and writing ONNX files safely; shared by the converter and the runtime.

Loading checks the file before trusting it: it must parse as a ModelProto with a graph, its
external data must stay inside the model's folder, and ``onnx.checker`` must accept it.
Every failure is an ``InvalidModelError`` that names the file and the problem.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ._atomic import atomic_write_bytes
from .errors import InvalidModelError

# A model file larger than this is refused before it is read (protobuf's own limit is 2 GiB).
MAX_MODEL_BYTES = 2 * 1024**3


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_external_data(model: onnx.ModelProto, base_dir: Path, path: Path) -> None:
    base = base_dir.resolve()
    for tensor in external_data_helper._get_all_tensors(model):  # noqa: SLF001  (onnx's own walker)
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = external_data_helper.ExternalDataInfo(tensor)
        location = info.location
        target = (base / location).resolve()
        if os.path.isabs(location) or (base != target and base not in target.parents):
            raise InvalidModelError(
                f"{path}: tensor {tensor.name!r} points its external data outside the model's folder "
                f"({location!r}); refusing to read it")
        if not target.is_file():
            raise InvalidModelError(f"{path}: external data file {location!r} of tensor {tensor.name!r} is missing")
        size = target.stat().st_size
        if info.offset is not None and info.offset > size or (
                info.length is not None and (info.offset or 0) + info.length > size):
            raise InvalidModelError(f"{path}: external data of tensor {tensor.name!r} runs past the end of {location!r}")


def load_model(path: str | os.PathLike, check: bool = True) -> onnx.ModelProto:
    """Load and validate an ONNX model, with its external data."""
    path = Path(path)
    if not path.exists():
        raise InvalidModelError(f"{path}: no such file")
    if not path.is_file():
        raise InvalidModelError(f"{path}: not a file")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise InvalidModelError(f"{path}: larger than {MAX_MODEL_BYTES} bytes")
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except (DecodeError, RuntimeError, ValueError, TypeError, UnicodeDecodeError) as error:
        raise InvalidModelError(f"{path}: not an ONNX model ({type(error).__name__}: {error})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise InvalidModelError(f"{path}: not an ONNX model (no graph, or a graph with no nodes)")
    _check_external_data(model, path.parent, path)
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as error:
        raise InvalidModelError(f"{path}: cannot read external data ({error})") from None
    if check:
        check_model(model, str(path))
    return model


def check_model(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidModelError(f"{what}: invalid ONNX model ({first})") from None


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Serialize and write atomically: a kill leaves the old file or the new one, never half."""
    atomic_write_bytes(path, model.SerializeToString(deterministic=True))
