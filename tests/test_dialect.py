"""The dialect's schemas and its writer/reader of neuron parameters."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper

from onnx2snn import InvalidModelError, dialect, normalize
from onnx2snn.dialect import IFAttributes, NeuronParameters
from onnx2snn.runtime import SpikingNetwork

from helpers import small_cnn


def test_if_attributes_have_defaults():
    attributes = IFAttributes.read({}, "node 'n'")
    assert attributes.reset == "subtract" and attributes.clip_max is None
    parameters = attributes.parameters
    assert parameters.threshold.tolist() == [1.0] and parameters.v_init.tolist() == [0.0]
    assert parameters.bias.tolist() == [0.0] and not parameters.signed and parameters.burst == 1


@pytest.mark.parametrize("attrs, message", [
    ({"reset": b"sideways"}, "reset must be one of"),
    ({"threshold": [1.0, -2.0]}, "threshold must be finite and positive"),
    ({"v_init": [float("inf")]}, "v_init must be finite"),
    ({"bias": [float("nan")]}, "bias must be finite"),
    ({"burst": 0}, "burst must be between 1 and 127"),
    ({"signed": 2}, "signed must be 0 or 1"),
    ({"clip_max": -1.0}, "clip_max must be finite and positive"),
    ({"burst": 2, "reset": "zero"}, "signed and burst spikes need reset 'subtract'"),
])
def test_bad_if_attributes_are_refused_by_name(attrs, message):
    with pytest.raises(InvalidModelError, match=f"node 'n': {message}"):
        IFAttributes.read(attrs, "node 'n'")


def test_parameters_written_into_the_graph_are_what_the_runtime_reads():
    canonical = normalize(small_cnn(np.random.default_rng(2))).model
    names = [n.name for n in canonical.graph.node if n.op_type == "IF"]
    chosen = {names[0]: NeuronParameters(np.arange(1, 9, dtype=np.float32), np.full(8, 0.25), np.linspace(-1, 1, 8),
                                         signed=True, burst=3),
              names[1]: NeuronParameters(np.array([0.5]))}
    dialect.write_neuron_parameters(canonical, chosen)
    neurons = SpikingNetwork(canonical).neurons()
    for name, expected in chosen.items():
        got = neurons[name].neuron_parameters()
        for field in ("threshold", "v_init", "bias"):
            np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
        assert (got.signed, got.burst) == (expected.signed, expected.burst)
    plain = next(n for n in canonical.graph.node if n.name == names[1])
    assert sorted(a.name for a in plain.attribute) == ["reset", "threshold", "v_init"]  # plain graphs stay plain


def test_the_structural_checks_count_dialect_inputs():
    model = normalize(small_cnn(np.random.default_rng(2))).model
    neuron = next(n for n in model.graph.node if n.op_type == "IF")
    neuron.input.append(neuron.input[0])
    with pytest.raises(InvalidModelError, match=r"\(onnx2snn.IF\) has 2 inputs.*1 to 1 inputs"):
        dialect.validate_structure(model)


def test_the_standard_onnx_meaning_runs_in_onnxruntime():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["y"])]
    from helpers import make_model, tensor

    ann = make_model(nodes, [tensor("x", ["N", 2, 4, 4])], [tensor("y", ["N", 12])],
                     {"w": np.random.default_rng(0).normal(0, 1, (3, 2, 3, 3)).astype(np.float32)})
    canonical = normalize(ann).model
    assert {(n.domain, n.op_type) for n in canonical.graph.node} >= {("onnx2snn", "IF"), ("onnx2snn", "MaxPool")}
    standard = dialect.as_standard_onnx(canonical)
    onnx.checker.check_model(standard)
    x = np.random.default_rng(1).normal(0, 1, (2, 2, 4, 4)).astype(np.float32)
    session = ort.InferenceSession(standard.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": x})[0]
    got = SpikingNetwork(canonical).analog(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("head", [b"PK\x03\x04", b"\x80\x02}q\x00"])
def test_a_pytorch_checkpoint_gets_the_export_call_from_the_library_too(tmp_path, head):
    path = tmp_path / "model.pth"
    path.write_bytes(head + b"weights" * 10)
    with pytest.raises(InvalidModelError, match=r"looks like a PyTorch checkpoint.*torch\.onnx\.export\("):
        dialect.load_model(path)
