"""The spiking-ONNX dialect: its domain, its version and the metadata keys of a spiking file.

A spiking file is an ordinary ONNX model. Synaptic ops stay standard; neurons and the spiking
max-pool are nodes of the custom domain ``onnx2snn``, imported at opset ``DIALECT_VERSION``.
The file also states that version in its metadata (``METADATA.dialect_version``).

Dialect versions:

1. (onnx2snn 0.1, no ``dialect_version`` key) ``onnx2snn.IF`` neurons; a standard-domain
   ``MaxPool`` node meant the spiking max-pool gate.
2. The spiking max-pool gate is its own node, ``onnx2snn.MaxPool``; a spiking file holds no
   standard-domain ``MaxPool``. Version-1 files are upgraded when read (``files.upgrade``).
"""
from __future__ import annotations

import dataclasses

import onnx

from ..errors import DialectVersionError, InvalidModelError

DOMAIN = "onnx2snn"
DIALECT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class MetadataKeys:
    """The ``metadata_props`` keys a spiking file may carry (all optional except as noted)."""

    dialect_version: str = "onnx2snn.dialect_version"  # written by every conversion since dialect 2
    package_version: str = "onnx2snn.version"
    threshold_method: str = "onnx2snn.threshold_method"
    reset: str = "onnx2snn.reset"
    calibration_images: str = "onnx2snn.calibration_images"
    calibration_timesteps: str = "onnx2snn.calibration_timesteps"
    calibration_seed: str = "onnx2snn.calibration_seed"
    weight_calibration: str = "onnx2snn.weight_calibration"  # JSON settings when weights were calibrated
    notes: str = "onnx2snn.notes"  # JSON list of what normalization did
    source_sha256: str = "onnx2snn.source_sha256"
    source_name: str = "onnx2snn.source_name"
    input_mean: str = "onnx2snn.input_mean"  # comma-separated, one per input channel
    input_std: str = "onnx2snn.input_std"
    input_layout: str = "onnx2snn.input_layout"  # nchw | nhwc (Keras/tf2onnx); absent means nchw
    config: str = "onnx2snn.config"  # JSON: the CLI's effective convert options (`convert --config SNN.onnx`)


METADATA = MetadataKeys()


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def domain_opset(model: onnx.ModelProto) -> int | None:
    """The opset at which ``model`` imports the onnx2snn domain, or None."""
    for opset in model.opset_import:
        if opset.domain == DOMAIN:
            return int(opset.version)
    return None


def is_spiking(model: onnx.ModelProto) -> bool:
    """Whether the graph holds nodes of the onnx2snn domain (a spiking file, or a canonical graph)."""
    return any(node.domain == DOMAIN for node in model.graph.node)


def dialect_version(model: onnx.ModelProto) -> int:
    """The dialect version a spiking file was written in; raises for one newer than this release reads."""
    stated = metadata(model).get(METADATA.dialect_version)
    if stated is None:
        version = domain_opset(model) or 1
    else:
        try:
            version = int(stated)
        except ValueError as error:
            raise InvalidModelError(f"metadata {METADATA.dialect_version} is {stated!r}, not a version number") \
                from error
    if version > DIALECT_VERSION:
        raise DialectVersionError(
            f"the file is in onnx2snn dialect version {version}, written by a newer onnx2snn; this release "
            f"reads versions 1 to {DIALECT_VERSION}: upgrade onnx2snn to read it")
    if version < 1:
        raise InvalidModelError(f"the file states onnx2snn dialect version {version}; versions start at 1")
    return version


def stamp(model: onnx.ModelProto) -> None:
    """Import the domain at the current dialect version (the metadata key is written with the rest)."""
    for opset in model.opset_import:
        if opset.domain == DOMAIN:
            opset.version = DIALECT_VERSION
            return
    model.opset_import.append(onnx.helper.make_opsetid(DOMAIN, DIALECT_VERSION))
