"""Reading and writing ONNX files safely (ANN or spiking); shared by the converter and the runtime.

Loading checks the file before trusting it: it must parse as a ModelProto with a graph, its
external data must stay inside the model's folder, and the structural checks and
``onnx.checker`` must accept it. Every failure is an ``InvalidModelError`` that names the file
and the problem. ``read_spiking`` adds what a spiking file needs: a dialect version this
release reads (older files are upgraded in memory) and at least one neuron.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from ..atomic import atomic_write_bytes
from ..errors import InvalidModelError, Onnx2SnnError
from .format import DOMAIN, dialect_version, is_spiking, stamp
from .structure import validate_structure

# A model file larger than this is refused before it is read (protobuf's own limit is 2 GiB).
MAX_MODEL_BYTES = 2 * 1024**3


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_external_data(model: onnx.ModelProto, base_dir: Path, path: Path) -> None:
    """Refuse external data outside the model's folder (``../``, absolute paths, symlinks out)."""
    base = base_dir.resolve()
    for tensor in external_data_helper._get_all_tensors(model):  # noqa: SLF001  (onnx's own walker)
        if not external_data_helper.uses_external_data(tensor):
            continue
        try:
            info = external_data_helper.ExternalDataInfo(tensor)
        except (ValueError, TypeError) as error:  # offset/length that are not integers
            raise InvalidModelError(f"{path}: tensor {tensor.name!r} has malformed external data info ({error})") \
                from error
        location = info.location or ""
        try:
            target = (base / location).resolve()  # follows symlinks: a link out of the folder is refused
        except (ValueError, OSError, RuntimeError) as error:  # NUL bytes, loops
            raise InvalidModelError(f"{path}: tensor {tensor.name!r} has an unusable external data location "
                                    f"{location!r} ({error})") from error
        if not location or os.path.isabs(location) or base not in target.parents:
            raise InvalidModelError(
                f"{path}: tensor {tensor.name!r} points its external data outside the model's folder "
                f"({location!r}); refusing to read it")
        if not target.is_file():
            raise InvalidModelError(f"{path}: external data file {location!r} of tensor {tensor.name!r} is missing")
        size = target.stat().st_size
        offset, length = info.offset or 0, info.length
        if offset < 0 or (length is not None and length < 0) or offset > size or (
                length is not None and offset + length > size):
            raise InvalidModelError(
                f"{path}: external data of tensor {tensor.name!r} runs past the end of {location!r}")


def _protobuf_kind(data: bytes) -> str | None:
    """Name the ONNX message a non-model protobuf most likely is, for a clearer error."""
    for kind, message in (("GraphProto", onnx.GraphProto), ("TensorProto", onnx.TensorProto),
                          ("NodeProto", onnx.NodeProto)):
        candidate = message()
        try:
            candidate.ParseFromString(data)
        except Exception:  # noqa: BLE001 - any parse failure just means "not this kind"
            continue
        if (kind == "GraphProto" and candidate.node) or (kind == "TensorProto" and candidate.dims) or \
                (kind == "NodeProto" and candidate.op_type):
            return kind
    return None


def _not_a_model_hint(data: bytes, fallback: str) -> str:
    """Why bytes that are not a model are not one, and what to do: a PyTorch checkpoint (a zip
    archive or a raw pickle) gets the export call; another ONNX message is named."""
    if data[:2] == b"PK" or data[:1] == b"\x80":
        return (f"this looks like a PyTorch checkpoint ({'zip archive' if data[:2] == b'PK' else 'pickle'}); "
                'export it first: torch.onnx.export(model, example_input, "model.onnx") with the model in eval '
                "mode and example_input a tensor of one input's shape")
    kind = _protobuf_kind(data)
    return f"it looks like a serialized {kind}, not a ModelProto" if kind else fallback


def parse_model(data: bytes, what: str) -> onnx.ModelProto:
    """Parse serialized bytes as a ModelProto with a non-empty graph, or raise InvalidModelError."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError, UnicodeDecodeError, RecursionError) as error:
        hint = _not_a_model_hint(data, f"truncated or not a protobuf: {type(error).__name__}")
        raise InvalidModelError(f"{what}: not an ONNX model ({hint})") from error
    if not model.HasField("graph") or not model.graph.node:
        hint = _not_a_model_hint(data, "no graph, or a graph with no nodes")
        raise InvalidModelError(f"{what}: not an ONNX model ({hint})")
    return model


def model_from_bytes(data: bytes, what: str = "the model") -> onnx.ModelProto:
    """Parse and validate a serialized model held in memory (it may not use external data)."""
    return check_in_memory(parse_model(data, what), what)


def check_in_memory(model: onnx.ModelProto, what: str = "the model") -> onnx.ModelProto:
    """Validate a ModelProto that never came from a file (its external data must be loaded already)."""
    if not isinstance(model, onnx.ModelProto):
        raise InvalidModelError(f"{what}: expected a path or an onnx.ModelProto, not {type(model).__name__}")
    for tensor in external_data_helper._get_all_tensors(model):  # noqa: SLF001
        if external_data_helper.uses_external_data(tensor):
            raise InvalidModelError(f"{what}: tensor {tensor.name!r} uses external data that is not loaded; "
                                    "load the model from its file instead")
    try:
        validate_structure(model)
    except Onnx2SnnError as error:
        raise type(error)(f"{what}: {error}") from error
    check_model(model, what)
    return model


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
        data = path.read_bytes()
    except OSError as error:
        raise InvalidModelError(f"{path}: cannot read ({error.strerror})") from error
    model = parse_model(data, str(path))
    del data
    _check_external_data(model, path.parent, path)
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except (OSError, ValueError) as error:
        raise InvalidModelError(f"{path}: cannot read external data ({error})") from error
    if check:
        try:
            validate_structure(model)
        except Onnx2SnnError as error:
            raise type(error)(f"{path}: {error}") from error
        check_model(model, str(path))
    return model


def check_model(model: onnx.ModelProto, what: str) -> None:
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # noqa: BLE001 - the checker raises ValidationError, ValueError, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InvalidModelError(f"{what}: invalid ONNX model ({first})") from error


def save_model(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Serialize and write atomically: a kill leaves the old file or the new one, never half."""
    atomic_write_bytes(path, model.SerializeToString(deterministic=True))


def upgrade(model: onnx.ModelProto, version: int) -> onnx.ModelProto:
    """Bring a spiking graph of an older dialect version to the current one, in place.

    Version 1 wrote the spiking max-pool gate as a standard-domain ``MaxPool`` node.
    """
    if version < 2:
        for node in model.graph.node:
            if node.op_type == "MaxPool" and node.domain in ("", "ai.onnx"):
                node.domain = DOMAIN
        stamp(model)
    return model


def read_spiking(source: str | os.PathLike | onnx.ModelProto) -> onnx.ModelProto:
    """A spiking model from a file or a ModelProto: checked, and upgraded to the current dialect version.

    An ANN (no onnx2snn nodes) is refused with a hint to convert it first; a file of a newer
    dialect version with a request to upgrade onnx2snn.
    """
    if isinstance(source, (str, os.PathLike)):
        what = os.fspath(source)
        model = load_model(source)
    else:
        what = "the model"
        model = check_in_memory(source, what)
    if not is_spiking(model):
        raise InvalidModelError(f"{what} is an ANN (it has no onnx2snn.IF neurons), not a spiking model; convert it "
                                "first (`onnx2snn convert`, or onnx2snn.convert in Python)")
    try:
        version = dialect_version(model)
    except InvalidModelError as error:
        raise type(error)(f"{what}: {error}") from error
    if version < 2 and model is source:
        model = copy.deepcopy(model)  # never rewrite the caller's ModelProto
    return upgrade(model, version)
