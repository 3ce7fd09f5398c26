"""Exports of a spiking ONNX file beyond this project's runtime (docs/export.md).

- ``unrolled.export_unrolled(model, T, mode="unroll"|"loop")``: standard ONNX that any ONNX runtime runs;
- ``nir_export.export_nir(model, strict=False)`` / ``write_nir``: a NIR graph, with a warning per difference;
- ``nir_import.read_nir(path)`` / ``import_nir(graph)``: a NIR graph back to a spiking ONNX model.

The spiking file is read only through ``_dialect`` (the project's loader and IF parsing).
"""

from .nir_export import LossyExportError, export_nir, write_nir
from .nir_import import import_nir, read_nir
from .unrolled import export_unrolled

__all__ = ["LossyExportError", "export_nir", "export_unrolled", "import_nir", "read_nir", "write_nir"]
