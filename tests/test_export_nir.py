"""NIR export and import: the graph passes NIR's own checks, a round trip keeps weights and
predictions, every semantic difference is named (and refused with strict), plain NIR graphs import."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from export_models import spiking_graph

from onnx2snn import save_model
from onnx2snn.cli.main import main
from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.errors import InvalidModelError
from onnx2snn.export.nir_export import LossyExportError, export_nir, write_nir
from onnx2snn.export.nir_import import import_nir
from onnx2snn.runtime.network import SpikingNetwork

import torch_models

nir = pytest.importorskip("nir", minversion="1.0.5")  # node metadata (the export refuses older ones)

T = 16


def _round_trip(model, tmp_path, use_metadata=True):
    exported = export_nir(model)
    path = tmp_path / "model.nir"
    write_nir(exported, path)
    graph = nir.read(str(path))  # type_check=True: NIR infers and checks every edge's types
    graph.validate_structure()
    assert graph.check_types()
    return exported, import_nir(graph, use_metadata=use_metadata)


def _simulate(model, x, timesteps=T):
    return SpikingNetwork(model).simulate(torch.from_numpy(x), timesteps, count_spikes=True)


def _weights(model):
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[1]] for n in model.graph.node if n.op_type in ("Conv", "Gemm")]


@pytest.mark.parametrize("case", [{}, {"reset": "zero"}, {"signed": True, "burst": 2}])
def test_round_trip_keeps_weights_and_predictions(case, tmp_path):
    model = spiking_graph(seed=5, **case)
    model.metadata_props.add(key="onnx2snn.input_mean", value="0.5,0.25,0.125")
    _, back = _round_trip(model, tmp_path)
    assert {p.key: p.value for p in back.metadata_props}["onnx2snn.input_mean"] == "0.5,0.25,0.125"
    for before, after in zip(_weights(model), _weights(back)):
        np.testing.assert_array_equal(before, after)
    thresholds = [list(onnx.helper.get_attribute_value(a)) for m in (model, back) for n in m.graph.node
                  if n.op_type == "IF" for a in n.attribute if a.name == "threshold"]
    assert thresholds[:3] == thresholds[3:]
    x = np.random.default_rng(0).uniform(0, 1, (8, 3, 8, 8)).astype(np.float32)
    before, after = _simulate(model, x), _simulate(back, x)
    np.testing.assert_allclose(after.outputs[T], before.outputs[T], rtol=1e-5, atol=1e-5)
    assert torch.equal(after.outputs[T].argmax(1), before.outputs[T].argmax(1))
    assert list(after.spikes.values()) == list(before.spikes.values())


def test_warnings_name_each_difference_and_strict_refuses():
    exported = export_nir(spiking_graph(signed=True, burst=2))
    text = " ".join(exported.warnings)
    for difference in ("reset by subtraction", "v_init", "burst", "signed", "max-pool"):
        assert difference in text
    assert any("bias current folded" in note for note in exported.notes)
    with pytest.raises(LossyExportError, match="strict"):
        export_nir(spiking_graph(), strict=True)
    exact = spiking_graph(reset="zero", v_init=False, bias=False, maxpool=False)
    assert export_nir(exact, strict=True).warnings == []


@pytest.mark.parametrize("bias", [False, True])
def test_spec_reading_of_an_exact_graph_matches(bias, tmp_path):
    """With no difference to warn about, a reader that ignores our metadata (NIR's IF: v > v_threshold,
    binary spikes, then the amplitude Scale) simulates what we do; a bias current is folded into the
    bias of the Conv before the neuron."""
    model = spiking_graph(seed=2, reset="zero", v_init=False, bias=bias, maxpool=False)
    _, back = _round_trip(model, tmp_path, use_metadata=False)
    assert not any(n.op_type == "IF" and any(a.name == "v_init" and any(a.floats) for a in n.attribute)
                   for n in back.graph.node)
    x = np.random.default_rng(3).uniform(0, 1, (8, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_simulate(back, x).outputs[T], _simulate(model, x).outputs[T], rtol=1e-5, atol=1e-5)


def test_spec_reading_loses_soft_reset(tmp_path):
    model = spiking_graph(seed=2, v_init=False, bias=False, maxpool=False)
    _, back = _round_trip(model, tmp_path, use_metadata=False)
    resets = {onnx.helper.get_attribute_value(a) for n in back.graph.node if n.op_type == "IF"
              for a in n.attribute if a.name == "reset"}
    assert resets == {b"zero"}


def test_converted_resnet_round_trip(tmp_path):
    ann = torch_models.export(torch_models.build("resnet18"), "torchscript-13-nofold")
    snn = convert_model(ann, torch.randn(16, 3, 32, 32),
                        ConversionOptions(threshold="percentile:99.9", calibration_timesteps=8)).model
    _, back = _round_trip(snn, tmp_path)
    x = torch.randn(4, 3, 32, 32).numpy()
    np.testing.assert_allclose(_simulate(back, x, 8).outputs[8], _simulate(snn, x, 8).outputs[8], rtol=1e-4, atol=1e-5)


def _reference_mlp(x, w1, b1, threshold, r, w2, b2, steps):
    """NIR's spec, step by step: Affine -> IF (v += r*I; z = v > thr; v = 0 where z) -> Affine."""
    v = np.zeros((len(x), len(b1)), np.float32)
    total = np.zeros((len(x), len(b2)), np.float32)
    for _ in range(steps):
        v = v + r * (x @ w1.T + b1)
        z = (v > threshold).astype(np.float32)
        v = np.where(z > 0, 0.0, v).astype(np.float32)
        total += z @ w2.T + b2
    return total / steps


def test_plain_nir_graph_imports_and_follows_the_spec():
    rng = np.random.default_rng(7)
    w1, b1 = rng.normal(0, 1, (6, 4)).astype(np.float32), rng.normal(0.2, 0.1, 6).astype(np.float32)
    w2, b2 = rng.normal(0, 1, (3, 6)).astype(np.float32), rng.normal(0, 0.1, 3).astype(np.float32)
    threshold = np.full(6, 0.75, np.float32)
    r = np.full(6, 0.5, np.float32)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([4])}), "fc1": nir.Affine(weight=w1, bias=b1),
               "lif": nir.IF(r=r, v_threshold=threshold), "fc2": nir.Affine(weight=w2, bias=b2),
               "out": nir.Output(output_type={"output": np.array([3])})},
        edges=[("in", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "out")])
    model = import_nir(graph)
    x = rng.uniform(0, 2, (10, 4)).astype(np.float32)
    got = _simulate(model, x, 20).outputs[20].numpy()
    np.testing.assert_allclose(got, _reference_mlp(x, w1, b1, threshold, r, w2, b2, 20), rtol=1e-4, atol=1e-5)


def test_sumpool_and_conv_import():
    rng = np.random.default_rng(8)
    weight = rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([2, 6, 6])}),
               "conv": nir.Conv2d(input_shape=(6, 6), weight=weight, stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(4, np.float32)),
               "if": nir.IF(r=np.ones((4, 6, 6), np.float32), v_threshold=np.ones((4, 6, 6), np.float32)),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
               "flat": nir.Flatten(input_type={"input": np.array([4, 3, 3])}, start_dim=0, end_dim=-1),
               "fc": nir.Linear(weight=rng.normal(0, 1, (5, 36)).astype(np.float32)),
               "out": nir.Output(output_type={"output": np.array([5])})},
        edges=[("in", "conv"), ("conv", "if"), ("if", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "out")])
    model = import_nir(graph)
    out = _simulate(model, rng.uniform(0, 1, (3, 2, 6, 6)).astype(np.float32), 8).outputs[8]
    assert out.shape == (3, 5) and torch.isfinite(out).all()


def test_unsupported_nodes_are_listed_at_once():
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([3])}),
               "lif": nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
               "li": nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
               "out": nir.Output(output_type={"output": np.array([3])})},
        edges=[("in", "lif"), ("lif", "li"), ("li", "out")])
    with pytest.raises(InvalidModelError, match=r"2 unsupported NIR node\(s\): 'lif' \(LIF\), 'li' \(LI\)"):
        import_nir(graph)


def test_cli_round_trip(tmp_path, capsys):
    source, nir_path, back = tmp_path / "snn.onnx", tmp_path / "m.nir", tmp_path / "back.onnx"
    save_model(spiking_graph(), source)
    assert main(["export", str(source), "--to", "nir", "-o", str(nir_path)]) == 0
    assert "warning: reset by subtraction" in capsys.readouterr().err
    assert main(["import", str(nir_path), "-o", str(back)]) == 0
    assert main(["export", str(source), "--to", "nir", "--strict", "-o", str(tmp_path / "x.nir")]) == 2
    assert "--strict" in capsys.readouterr().err
    assert not (tmp_path / "x.nir").exists()
    assert main(["import", str(tmp_path / "missing.nir"), "-o", str(back)]) == 2
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)
    from onnx2snn.runtime import load
    np.testing.assert_allclose(load(back).simulate(torch.from_numpy(x), 8).outputs[8],
                               _simulate(spiking_graph(), x, 8).outputs[8], rtol=1e-5, atol=1e-5)


def test_spec_threshold_is_strict():
    """NIR fires at v > v_threshold: a current of exactly the threshold fires every second step."""
    one = np.ones((1, 1), np.float32)
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type={"input": np.array([1])}), "a": nir.Linear(weight=one),
               "if": nir.IF(r=np.ones(1, np.float32), v_threshold=np.ones(1, np.float32)),
               "b": nir.Linear(weight=one), "out": nir.Output(output_type={"output": np.array([1])})},
        edges=[("in", "a"), ("a", "if"), ("if", "b"), ("b", "out")])
    out = _simulate(import_nir(graph), np.ones((1, 1), np.float32), 4).outputs[4]
    assert float(out) == 0.5
