"""The spiking-ONNX dialect: the file format that the converter writes and the runtime reads.

Free of torch; imported by the ops, the runtime and the converter, and importing none of them.

- ``format``: the ``onnx2snn`` domain, the dialect version, the metadata keys;
- ``schemas``: the dialect's ops (``IF``, ``MaxPool``) with their attributes, and the neuron
  parameters that calibration returns and the converter writes;
- ``structure``: structural checks of any graph the tool reads;
- ``files``: safe reading and atomic writing of ONNX files, and reading a spiking file.
"""

from .analog import as_standard_onnx
from .files import (
    MAX_MODEL_BYTES,
    check_in_memory,
    check_model,
    load_model,
    model_from_bytes,
    parse_model,
    read_spiking,
    save_model,
    sha256_file,
    upgrade,
)
from .format import (
    DIALECT_VERSION,
    DOMAIN,
    METADATA,
    MetadataKeys,
    dialect_version,
    domain_opset,
    is_spiking,
    metadata,
    stamp,
)
from .schemas import (
    IF_SCHEMA,
    MAXPOOL_SCHEMA,
    RESET_MODES,
    SCHEMAS,
    AttributeSpec,
    IFAttributes,
    NeuronParameters,
    OpSchema,
    is_neuron_node,
    write_neuron_parameters,
)
from .structure import MAX_TENSOR_BYTES, validate_structure

__all__ = [
    "DIALECT_VERSION",
    "DOMAIN",
    "IF_SCHEMA",
    "MAXPOOL_SCHEMA",
    "MAX_MODEL_BYTES",
    "MAX_TENSOR_BYTES",
    "METADATA",
    "RESET_MODES",
    "SCHEMAS",
    "AttributeSpec",
    "IFAttributes",
    "MetadataKeys",
    "NeuronParameters",
    "OpSchema",
    "as_standard_onnx",
    "check_in_memory",
    "check_model",
    "dialect_version",
    "domain_opset",
    "is_neuron_node",
    "is_spiking",
    "load_model",
    "metadata",
    "model_from_bytes",
    "parse_model",
    "read_spiking",
    "save_model",
    "sha256_file",
    "stamp",
    "upgrade",
    "validate_structure",
    "write_neuron_parameters",
]
