"""An installed nir too old for the export (no node metadata) is one clear error, not an AttributeError."""
import dataclasses
import sys
import types

import pytest

from onnx2snn.errors import ConfigError
from onnx2snn.export.nir_export import require_nir


def test_a_nir_without_node_metadata_is_refused_with_what_to_install(monkeypatch):
    @dataclasses.dataclass
    class Conv2d:  # nir 1.0.4's Conv2d: no metadata field
        weight: object = None

    monkeypatch.setitem(sys.modules, "nir", types.SimpleNamespace(Conv2d=Conv2d, __version__="1.0.4"))
    with pytest.raises(ConfigError, match=r"nir >= 1\.0\.5 \(installed: 1\.0\.4\).*pip install 'nir>=1\.0\.5'"):
        require_nir()
