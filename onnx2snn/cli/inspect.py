"""``onnx2snn inspect``: what a graph holds and, for an ANN, whether it converts."""
from __future__ import annotations

import collections
import json

import onnx

from ..converter.normalize import normalize
from ..dialect import dialect_version, is_neuron_node, is_spiking, load_model
from ..errors import InvalidModelError


def _summary(path: str) -> dict:
    model = load_model(path)
    graph = model.graph
    counts = collections.Counter(
        (f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in graph.node)
    initializers = {i.name for i in graph.initializer}
    parameters = sum(int(onnx.helper.np.prod(i.dims)) if i.dims else 1 for i in graph.initializer)
    info = {
        "file": path,
        "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializers],
        "outputs": [_value_info(v) for v in graph.output],
        "nodes": len(graph.node),
        "parameters": parameters,
        "ops": dict(sorted(counts.items())),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
    if is_spiking(model):
        info["kind"] = "spiking"
        info["dialect_version"] = dialect_version(model)  # refuses a newer one
        neurons = [n for n in graph.node if is_neuron_node(n)]
        info["neurons"] = [{"name": n.name, **{a.name: _attr(a) for a in n.attribute}} for n in neurons]
    else:
        info["kind"] = "ann"
        info["conversion"] = _conversion_check(model)
    return info


def _attr(attribute: onnx.AttributeProto):
    value = onnx.helper.get_attribute_value(attribute)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and len(value) > 4:
        return f"{len(value)} values, {min(value):.4g}..{max(value):.4g}"
    return value


def _conversion_check(model: onnx.ModelProto) -> str:
    try:
        canonical = normalize(model)
    except InvalidModelError as error:
        return f"not convertible: {error}"
    neurons = sum(is_neuron_node(n) for n in canonical.model.graph.node)
    return f"convertible: {neurons} spiking layers, {len(canonical.model.graph.node)} nodes after normalization"


def _value_info(value: onnx.ValueInfoProto) -> str:
    dims = [d.dim_param or str(d.dim_value) if (d.dim_param or d.dim_value) else "?"
            for d in value.type.tensor_type.shape.dim]
    return f"{value.name} [{', '.join(dims)}]"


def describe(path: str, as_json: bool = False) -> str:
    info = _summary(path)
    if as_json:
        return json.dumps(info, indent=2)
    lines = [f"{info['file']}: {info['kind']} graph, {info['nodes']} nodes, {info['parameters']:,} parameters",
             f"  opsets:  {', '.join(f'{k} {v}' for k, v in info['opsets'].items())}",
             f"  inputs:  {', '.join(info['inputs'])}", f"  outputs: {', '.join(info['outputs'])}",
             "  ops:     " + ", ".join(f"{op} x{count}" for op, count in info["ops"].items())]
    if "conversion" in info:
        lines.append(f"  {info['conversion']}")
    for neuron in info.get("neurons", []):
        details = ", ".join(f"{k}={v}" for k, v in neuron.items() if k != "name")
        lines.append(f"  neuron {neuron['name']}: {details}")
    for key, value in info["metadata"].items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)
