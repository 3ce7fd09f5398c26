"""``onnx2snn inspect``: one row per layer of an ANN or spiking file, and ``--diff`` of the two.

The data come from ``onnx2snn.inspection``; this module only lays them out as text.
"""
from __future__ import annotations

import json

from ..inspection import Inspection, diff, diff_json, inspect_model, neuron_text


def shape_text(shape) -> str:
    """Per-image shape (the batch dimension left out), e.g. ``16x32x32``."""
    if not shape:
        return "?" if shape is None else "scalar"
    return "x".join(str(d) for d in (shape[1:] if len(shape) >= 2 else shape))


def count_text(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f}M"
    if value >= 10_000:
        return f"{value / 1e3:.1f}k"
    return str(value)


def table(header: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    widths[-1] = 0  # the last column runs free

    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in
                         enumerate(zip(cells, widths))).rstrip()
    return [line(header)] + [line(r) for r in rows]


def summary_line(info: Inspection) -> str:
    opset = ", ".join(f"{domain} {version}" for domain, version in info.opset.items())
    return (f"{len(info.layers)} layers, {info.parameters:,} parameters, {info.macs:,} MACs per image, "
            f"opset {opset}, producer {info.producer or 'unknown'}")


def layer_rows(info: Inspection) -> list[str]:
    last = "neuron" if info.kind == "spiking" else "normalization"
    rows = []
    for layer in info.layers:
        if info.kind == "spiking":
            detail = neuron_text(layer.neuron) if layer.neuron else ""
        else:
            detail = f"UNSUPPORTED: {layer.unsupported}" if layer.unsupported else (layer.fate or "")
        rows.append([layer.name, layer.op, shape_text(layer.output_shape), count_text(layer.parameters),
                     count_text(layer.macs), detail])
    return table(["layer", "op", "output", "params", "MACs", last], rows, right={3, 4})


def describe_text(info: Inspection) -> str:
    if info.kind == "spiking":
        neurons = sum(layer.neuron is not None for layer in info.layers)
        head = f"{info.path}: spiking graph, {neurons} IF neuron layers"
    else:
        spiking = sum(1 for layer in info.layers if (layer.fate or "").startswith("replaced by an IF"))
        verdict = f"convertible, {spiking} spiking layers" if info.convertible else f"NOT convertible: {info.problem}"
        head = f"{info.path}: ANN, {verdict}"
    lines = [head, f"inputs: {', '.join(info.inputs)}   outputs: {', '.join(info.outputs)}", ""]
    lines += layer_rows(info)
    lines += ["", summary_line(info)]
    for note in info.notes:
        lines.append(f"note: {note}")
    for key, value in info.metadata.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines)


def describe(path: str, as_json: bool = False) -> str:
    info = inspect_model(path)
    return json.dumps(info.to_json(), indent=2) if as_json else describe_text(info)


def describe_diff(ann_path: str, snn_path: str, as_json: bool = False) -> str:
    ann, snn = inspect_model(ann_path), inspect_model(snn_path)
    rows = diff(ann, snn)
    if as_json:
        return json.dumps({"ann": ann_path, "snn": snn_path, "rows": diff_json(rows),
                           "ann_summary": {k: v for k, v in ann.to_json().items() if k != "rows"},
                           "snn_summary": {k: v for k, v in snn.to_json().items() if k != "rows"}}, indent=2)
    cells = []
    for row in rows:
        a, s = row.ann, row.snn
        cells.append([a.name if a else "", a.op if a else "", shape_text(a.output_shape) if a else "",
                      "->" if a and s else "", s.name if s else "", s.op if s else "",
                      f"{row.fate}" + (f"; {neuron_text(s.neuron)}" if s and s.neuron else "")])
    lines = [f"{ann_path} (ANN) -> {snn_path} (spiking)", ""]
    lines += table(["ANN layer", "op", "output", "", "spiking layer", "op", "what happened"], cells)
    lines += ["", f"ANN:     {summary_line(ann)}", f"spiking: {summary_line(snn)}"]
    if ann.parameters != snn.parameters:
        lines.append(f"parameters {ann.parameters:,} -> {snn.parameters:,} (BatchNorm and affine constants folded "
                     "into weights; thresholds are attributes, not counted)")
    return "\n".join(lines)
