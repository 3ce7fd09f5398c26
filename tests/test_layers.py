"""The package's layers: the runtime and the dialect stand without the converter, the public API
imports, the dialect version is stated and checked, and nothing reaches below the public API."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

import onnx2snn
from onnx2snn import dialect
from onnx2snn.api import __all__ as API_NAMES

from helpers import small_cnn

ROOT = Path(__file__).resolve().parents[1]


def fresh_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def spiking_file(tmp_path_factory) -> Path:
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    conversion = onnx2snn.convert_model(small_cnn(np.random.default_rng(5)), x,
                                        onnx2snn.ConversionOptions(threshold="max"))
    path = tmp_path_factory.mktemp("layers") / "snn.onnx"
    onnx2snn.save_model(conversion.model, path)
    return path


def test_the_runtime_loads_and_simulates_without_the_converter(spiking_file):
    out = fresh_python(
        "import sys, json, torch\n"
        "import onnx2snn.runtime as runtime\n"
        f"net = runtime.load({str(spiking_file)!r})\n"
        "sim = net.simulate(torch.zeros(2, 3, 8, 8), [4])\n"
        "print(json.dumps({'shape': list(sim.outputs[4].shape),\n"
        "                  'converter': sorted(m for m in sys.modules if m.startswith('onnx2snn.converter'))}))\n")
    report = json.loads(out)
    assert report == {"shape": [2, 10], "converter": []}


def test_the_dialect_needs_no_torch():
    out = fresh_python("import sys, onnx2snn.dialect\n"
                       "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('onnx2snn.ops')))\n")
    assert out.strip() == "[]"


def test_the_public_api_imports():
    fresh_python("import onnx2snn; onnx2snn.convert; onnx2snn.load; onnx2snn.evaluate; onnx2snn.load_images")
    assert set(API_NAMES) <= set(onnx2snn.__all__)
    for name in onnx2snn.__all__:
        assert getattr(onnx2snn, name) is not None
    with pytest.raises(AttributeError):
        onnx2snn.no_such_name  # noqa: B018


def test_load_takes_a_path_or_a_model_proto(spiking_file):
    model = onnx.load(str(spiking_file))
    x = torch.randn(2, 3, 8, 8)
    from_path = onnx2snn.load(spiking_file).simulate(x, 8).outputs[8]
    from_proto = onnx2snn.load(model).simulate(x, 8).outputs[8]
    assert torch.equal(from_path, from_proto)
    with pytest.raises(onnx2snn.InvalidModelError, match="ModelProto"):
        onnx2snn.load(42)


def test_an_ann_is_refused_with_a_hint_to_convert_it(tmp_path):
    ann = tmp_path / "ann.onnx"
    ann.write_bytes(small_cnn(np.random.default_rng(1)).SerializeToString())
    for call in (lambda: onnx2snn.load(ann), lambda: onnx2snn.evaluate(ann, tmp_path, timesteps=[4])):
        with pytest.raises(onnx2snn.InvalidModelError, match=r"is an ANN.*onnx2snn convert"):
            call()


def test_a_spiking_file_states_its_dialect_version(spiking_file):
    model = onnx.load(str(spiking_file))
    assert dialect.metadata(model)[dialect.METADATA.dialect_version] == str(dialect.DIALECT_VERSION)
    assert dialect.domain_opset(model) == dialect.DIALECT_VERSION


@pytest.mark.parametrize("where", ["metadata", "opset"])
def test_a_newer_dialect_version_is_refused(spiking_file, tmp_path, where):
    model = onnx.load(str(spiking_file))
    newer = dialect.DIALECT_VERSION + 1
    if where == "metadata":
        onnx.helper.set_model_props(model, {**dialect.metadata(model), dialect.METADATA.dialect_version: str(newer)})
    else:
        del model.metadata_props[:]
        next(o for o in model.opset_import if o.domain == dialect.DOMAIN).version = newer
    path = tmp_path / "newer.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(onnx2snn.DialectVersionError, match=rf"dialect version {newer}.*upgrade onnx2snn"):
        onnx2snn.load(path)


def maxpool_ann() -> onnx.ModelProto:
    from helpers import make_model, tensor

    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"]), helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 6])],
                      {"w1": rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32),
                       "w2": rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32)})


def as_dialect_version_1(model: onnx.ModelProto) -> onnx.ModelProto:
    """What onnx2snn 0.1 wrote: no version key, the domain at opset 1, a standard MaxPool as the gate."""
    old = onnx.ModelProto.FromString(model.SerializeToString())
    for node in old.graph.node:
        if node.op_type == "MaxPool":
            node.domain = ""
    next(o for o in old.opset_import if o.domain == dialect.DOMAIN).version = 1
    props = {k: v for k, v in dialect.metadata(old).items() if k != dialect.METADATA.dialect_version}
    del old.metadata_props[:]
    onnx.helper.set_model_props(old, props)
    return old


def test_maxpool_is_written_as_a_dialect_node_and_old_files_still_load(tmp_path):
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    conversion = onnx2snn.convert_model(maxpool_ann(), x, onnx2snn.ConversionOptions(threshold="percentile:99.9"))
    nodes = [(n.domain, n.op_type) for n in conversion.model.graph.node]
    assert ("onnx2snn", "MaxPool") in nodes and ("", "MaxPool") not in nodes
    old = tmp_path / "old.onnx"
    old.write_bytes(as_dialect_version_1(conversion.model).SerializeToString())
    test = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    new_outputs = onnx2snn.load(conversion.model).simulate(test, [4, 16])
    old_outputs = onnx2snn.load(old).simulate(test, [4, 16])
    for t in (4, 16):
        assert torch.equal(new_outputs.outputs[t], old_outputs.outputs[t])
    # the gate is the spiking one in both: over time it differs from a max-pool of the analog input
    analog = onnx2snn.load(old).analog(test)
    assert not torch.allclose(old_outputs.outputs[16], analog)


def test_the_spiking_maxpool_gate_is_unchanged():
    """A hand-computed case of the gate (Rueckauer et al. 2017): the leader is the input with the
    highest accumulated current so far, and only its current passes."""
    from onnx2snn.ops import NodeInfo, lookup

    cls = lookup(dialect.DOMAIN, "MaxPool", dialect.DIALECT_VERSION)
    gate = cls(NodeInfo("pool", "MaxPool", dialect.DOMAIN, 2, {"kernel_shape": [2]}, ["x"], ["y"], {}))
    steps = [torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 3.0]]]), torch.tensor([[[2.0, 0.0]]])]
    state, out = None, []
    for x in steps:
        y, state = gate.step(state, x)
        out.append(float(y))
    # leaders by accumulated input: 0 (1 > 0), then 1 (3 > 1), then 0 again (3 = 3: a tie goes to the first)
    assert out == [1.0, 3.0, 2.0]


PUBLIC_MODULES = {"onnx2snn", "onnx2snn.data", "onnx2snn.report", "onnx2snn.atomic", "onnx2snn.runtime",
                  "onnx2snn.dialect", "onnx2snn.cli.main", "onnx2snn.export"}


def test_benchmarks_examples_and_scripts_use_only_the_public_api():
    offenders = []
    for folder in ("benchmarks", "examples", "scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                    [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
                offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                              if name.startswith("onnx2snn") and name not in PUBLIC_MODULES]
    assert not offenders, offenders


def test_no_module_imports_the_package_inside_a_function():
    """Imports inside functions were how import cycles hid; the layers keep the package acyclic."""
    found = []
    for path in (ROOT / "onnx2snn").rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("onnx2snn")):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


LAYERS = ["cli", "api", "converter", "runtime", "ops", "dialect"]  # each may import only those after it
GROUND = {"errors", "atomic", "sizes"}


def test_imports_go_one_way_through_the_layers():
    def layer_of(module: str) -> str | None:
        parts = module.split(".")
        top = parts[1] if len(parts) > 1 else ""
        named = {"evaluation": "api", "docs": "api", "inspection": "api", "stats": "api", "config": "api",
                 "export": "api", "report": "ground", "devices": "ground", "data": "data", "resources": "runtime"}
        if top in named:
            return named[top]
        return top if top in LAYERS else ("ground" if top in GROUND else None)

    order = {name: i for i, name in enumerate(LAYERS)}
    order.update({"data": order["ops"] + 0.5, "ground": len(LAYERS)})
    wrong = []
    for path in (ROOT / "onnx2snn").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        source = layer_of(module)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = module.split(".")[: len(module.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
            target = layer_of(".".join(base + ([node.module] if node.module else [])))
            if source is None or target is None or source == target:
                continue
            if order[target] < order[source]:
                wrong.append(f"{module} ({source}) imports {target}")
    assert not wrong, wrong
