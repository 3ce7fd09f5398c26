"""The plain-ONNX export runs in onnxruntime with no custom ops and agrees with the PyTorch runtime
on the accumulated outputs and the spike counts of every layer."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from export_models import spiking_graph

from onnx2snn import save_model
from onnx2snn.cli.main import main
from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.errors import ConfigError, InvalidModelError
from onnx2snn.export.unrolled import export_unrolled
from onnx2snn.runtime.network import SpikingNetwork

import torch_models

T = 12


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _all_domains(graph: onnx.GraphProto) -> set[str]:
    domains = set()
    for node in graph.node:
        domains.add(node.domain)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                domains |= _all_domains(attr.g)
    return domains


def assert_agrees(model: onnx.ModelProto, x: np.ndarray, timesteps: int, mode: str) -> None:
    expected = SpikingNetwork(model).simulate(torch.from_numpy(x), timesteps, count_spikes=True)
    plain = export_unrolled(model, timesteps, mode=mode)
    assert _all_domains(plain.graph) <= {""}, "only standard ONNX ops"
    session = _session(plain)
    results = session.run(None, {session.get_inputs()[0].name: x})
    names = [o.name for o in session.get_outputs()]
    np.testing.assert_allclose(results[0], expected.outputs[timesteps].numpy(), rtol=1e-5, atol=1e-5)
    counts = {name.split("/", 1)[1]: value for name, value in zip(names[1:], results[1:])}
    assert set(counts) == set(expected.spikes)
    for layer, total in expected.spikes.items():
        assert counts[layer].shape == (len(x),)
        assert float(counts[layer].sum()) == pytest.approx(total, rel=1e-6), layer
    assert sum(expected.spikes.values()) > 0


CASES = {
    "soft": {},
    "hard": {"reset": "zero"},
    "burst": {"burst": 3},
    "signed": {"signed": True},
    "signed_burst": {"signed": True, "burst": 2},
    "plain": {"v_init": False, "bias": False, "maxpool": False},
}


@pytest.mark.parametrize("mode", ["unroll", "loop"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_export_agrees_with_runtime(case, mode):
    """Per-channel thresholds, v_init, bias, a residual Add and a spiking max-pool in every case."""
    x = np.random.default_rng(1).uniform(0, 1, (5, 3, 8, 8)).astype(np.float32)
    assert_agrees(spiking_graph(seed=3, **CASES[case]), x, T, mode)


def test_one_timestep_and_static_nodes_computed_once():
    model = spiking_graph()
    x = np.random.default_rng(2).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    assert_agrees(model, x, 1, "unroll")
    plain = export_unrolled(model, 7)
    conv1 = [n for n in plain.graph.node if n.op_type == "Conv" and n.input[0] == "x"]
    assert len(conv1) == 1, "the input-only conv runs once, outside time"
    assert sum(1 for n in plain.graph.node if n.op_type == "Conv") == 1 + 2 * 7


@pytest.mark.parametrize("architecture", ["resnet18", "maxpool"])
def test_converted_models_agree(architecture):
    ann = torch_models.export(torch_models.build(architecture), "torchscript-13-nofold")
    calibration = torch.randn(16, 3, 32, 32)
    snn = convert_model(ann, calibration, ConversionOptions(threshold="percentile:99.9", calibration_timesteps=8)).model
    assert_agrees(snn, torch.randn(3, 3, 32, 32).numpy(), 10, "unroll")


def test_errors():
    model = spiking_graph()
    with pytest.raises(ConfigError, match="mode"):
        export_unrolled(model, 4, mode="scan")
    with pytest.raises(ConfigError, match="positive"):
        export_unrolled(model, 0)
    no_neurons = spiking_graph()
    del no_neurons.graph.node[:]
    with pytest.raises(InvalidModelError):
        export_unrolled(no_neurons, 4)


def test_cli(tmp_path, capsys):
    source = tmp_path / "snn.onnx"
    save_model(spiking_graph(), source)
    out = tmp_path / "plain.onnx"
    assert main(["export", str(source), "--to", "onnx-unrolled", "-T", "5", "-o", str(out)]) == 0
    x = np.random.default_rng(4).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    expected = SpikingNetwork(spiking_graph()).simulate(torch.from_numpy(x), 5).outputs[5].numpy()
    np.testing.assert_allclose(_session(onnx.load(out)).run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
    assert main(["export", str(source), "--to", "onnx-loop", "-o", str(out)]) == 2
    assert "-T" in capsys.readouterr().err
    assert main(["export", str(source), "--to", "onnx-loop", "-T", "3", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["T"] == 3 and summary["output"] == str(out)
    assert summary["outputs"][0] == onnx.load(out).graph.output[0].name
    assert main(["export", str(source), "--to", "onnx-loop", "-T", "3", "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("attrs", [{"reset": "subtract"}, {"reset": "zero"}, {"burst": 2}, {"signed": 1, "burst": 2}])
def test_exact_threshold_crossings(attrs):
    """Currents that are exact fractions of the threshold reach v == threshold: it fires (v >= θ)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("IF", ["x"], ["s"], name="n", domain="onnx2snn", threshold=[0.5, 0.25, 1.0],
                              v_init=[0.0], **attrs),
             helper.make_node("Gemm", ["s", "w"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "exact", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              initializer=[numpy_helper.from_array(np.eye(2, 3, dtype=np.float32), "w")])
    model = onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                         helper.make_opsetid("onnx2snn", 2)])
    x = np.array([[0.25, 0.125, 0.5], [0.5, 0.25, -0.25], [1.0, 0.0625, 0.75]], np.float32)
    assert_agrees(model, x, 9, "unroll")
