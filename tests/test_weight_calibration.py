"""Weight calibration (``--calibrate-weights``, docs/low_latency.md) on small built-in networks."""
from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

import onnx2snn
from onnx2snn.converter import convert as convert_module
from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods.weights import WeightSettings
from onnx2snn.converter.weight_files import untie_weights
from onnx2snn.errors import ConfigError
from onnx2snn.runtime.distributed import World
from onnx2snn.runtime.network import SpikingNetwork

from helpers import make_model, run_onnxruntime, small_cnn, tensor

TUNED = ("Conv", "Gemm")


@pytest.fixture(autouse=True)
def few_iterations(monkeypatch):
    """Fewer optimizer steps than the default: these networks are tiny, and the tests must stay fast."""
    monkeypatch.setattr(convert_module, "WeightSettings", functools.partial(WeightSettings, iterations=60))


def two_layer_model(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv -> ReLU -> Conv -> ReLU -> Flatten: the output is the second neuron layer, whose input spikes."""
    init = {"w1": rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.2, 6).astype(np.float32),
            "w2": rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "b2": rng.normal(0, 0.2, 6).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["y"], name="flatten")]
    return make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 216])], init)


def images(seed: int, n: int, size: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32))


def convert(model, x, weights: bool, threshold: str = "auto", timesteps: int = 8):
    options = ConversionOptions(threshold=threshold, calibration_timesteps=timesteps, batch_size=32,
                                calibrate_weights=weights)
    return convert_model(model, x, options)


def tuned_inputs(model: onnx.ModelProto) -> set[str]:
    return {name for node in model.graph.node if node.op_type in TUNED for name in node.input[1:3]}


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def test_only_conv_and_gemm_initializers_change(rng):
    model, x = small_cnn(rng), images(0, 96, 8)
    plain, fitted = convert(model, x, False).model, convert(model, x, True).model
    assert [(n.op_type, list(n.input), list(n.output)) for n in plain.graph.node] == \
        [(n.op_type, list(n.input), list(n.output)) for n in fitted.graph.node]
    before, after = initializers(plain), initializers(fitted)
    assert set(before) == set(after)
    changed = {name for name in before if not np.array_equal(before[name], after[name])}
    assert changed and changed <= tuned_inputs(fitted)
    for node in fitted.graph.node:  # the neurons stay binary with soft reset
        if node.op_type == "IF":
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            assert attributes.get("signed", 0) == 0 and attributes.get("burst", 1) == 1
            assert attributes["reset"] in ("subtract", b"subtract")
    metadata = {p.key: p.value for p in fitted.metadata_props}
    assert "iterations" in metadata["onnx2snn.weight_calibration"]
    assert "onnx2snn.weight_calibration" not in {p.key for p in plain.metadata_props}


def output_error(conversion, model, x, timesteps: int) -> float:
    ann = torch.from_numpy(run_onnxruntime(model, x.numpy()))
    out = SpikingNetwork(conversion.model).simulate(x, timesteps).outputs[timesteps]
    return float(((out - ann) ** 2).mean())


def test_lowers_the_rate_code_error_on_the_calibration_images(rng):
    model, x = two_layer_model(rng), images(1, 128, 6)
    plain = output_error(convert(model, x, False, "percentile:99.9+channel+vhalf"), model, x, 8)
    fitted = output_error(convert(model, x, True, "percentile:99.9+channel+vhalf"), model, x, 8)
    assert fitted < 0.9 * plain, (plain, fitted)


def test_the_file_loads_and_simulates(rng, tmp_path):
    model, x = small_cnn(rng), images(2, 64, 8)
    path = tmp_path / "snn.onnx"
    onnx.save(convert(model, x, True).model, path)
    loaded = onnx.load(path)
    onnx.checker.check_model(loaded)
    outputs = SpikingNetwork(loaded).simulate(x[:8], [4, 8]).outputs
    assert outputs[8].shape == (8, 10) and torch.isfinite(outputs[8]).all()


def test_shared_weights_get_one_copy_per_consumer(rng):
    init = {"w": rng.normal(0, 0.5, (3, 3, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.1, 3).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w", "b"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["y"], name="flatten")]
    model = make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 108])], init)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    assert sorted(untie_weights(copy)) == ["b.conv1", "w.conv1"]
    convs = [n for n in copy.graph.node if n.op_type == "Conv"]
    assert list(convs[0].input[1:]) == ["w.conv1", "b.conv1"] and list(convs[1].input[1:]) == ["w", "b"]
    fitted = convert(model, images(3, 64, 6), True, "percentile:99.9+channel+vhalf").model
    names = [list(n.input[1:]) for n in fitted.graph.node if n.op_type == "Conv"]
    assert names[0] != names[1]  # each consumer has its own weights; neither changed the other's
    values = initializers(fitted)
    assert set(values) == {"w", "b", "w.conv1", "b.conv1"}


@pytest.mark.parametrize("options, message", [
    (dict(reset="zero"), "subtract"),
    (dict(calibrate_weights="yes"), "true or false"),
])
def test_bad_option_combinations(rng, options, message):
    options = {"calibrate_weights": True, **options}
    with pytest.raises(ConfigError, match=message):
        convert_model(small_cnn(rng), images(4, 8, 8), ConversionOptions(**options))


def test_the_cli_flag(tmp_path, small_cnn_file, tiny_images):
    snn = tmp_path / "snn.onnx"
    result = subprocess.run([sys.executable, "-m", "onnx2snn", "convert", str(small_cnn_file), "-o", str(snn),
                             "--data", str(tiny_images), "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                             "--calib", "40", "--calib-timesteps", "8", "--calibrate-weights"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metadata = {p.key: p.value for p in onnx.load(str(snn)).metadata_props}
    assert "onnx2snn.weight_calibration" in metadata
    assert '"calibrate_weights": true' in metadata["onnx2snn.config"]
    result = subprocess.run([sys.executable, "-m", "onnx2snn", "convert", str(small_cnn_file), "-o", str(snn),
                             "--data", str(tiny_images), "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25",
                             "--reset", "zero", "--calibrate-weights"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().startswith("onnx2snn: error:"), result.stderr
    assert "--calibrate-weights" in result.stderr and "subtract" in result.stderr


def test_the_python_api(tmp_path, small_cnn_file, tiny_images):
    snn = tmp_path / "snn.onnx"
    onnx2snn.convert(small_cnn_file, snn, tiny_images, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), calibration_images=40,
                     options=onnx2snn.ConversionOptions(calibration_timesteps=8, calibrate_weights=True))
    assert "onnx2snn.weight_calibration" in onnx2snn.load(snn).metadata


@pytest.mark.parametrize("threshold", ["max", "percentile:99.9", "spikenorm"])
def test_on_top_of_methods_that_do_not_simulate(rng, threshold):
    """These choose every threshold first; the weights are then fitted layer by layer with them fixed."""
    model, x = two_layer_model(rng), images(5, 96, 6)
    plain, fitted = convert(model, x, False, threshold), convert(model, x, True, threshold)
    assert {name: p.threshold.tolist() for name, p in plain.neurons.items()} == \
        {name: p.threshold.tolist() for name, p in fitted.neurons.items()}
    assert output_error(fitted, model, x, 8) < output_error(plain, model, x, 8)


def test_refused_under_torchrun(rng):
    """The weight fit is not sharded over processes, so several processes would each fit their own."""
    model = small_cnn(rng)
    options = ConversionOptions(calibrate_weights=True)
    method = options.validate()
    with pytest.raises(ConfigError, match="without torchrun"):
        convert_module._convert(model, images(4, 8, 8), options, method, {}, checked=False,
                                world=World(rank=0, size=2))


def test_a_spiking_max_pool_between_layers(rng):
    """A max-pool gate stores float trains (not packed bits): reading its rates must not write into them."""
    init = {"w1": rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.2, 6).astype(np.float32),
            "w2": rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "b2": rng.normal(0, 0.2, 6).astype(np.float32),
            "wf": rng.normal(0, 0.5, (10, 6)).astype(np.float32), "bf": rng.normal(0, 0.1, 10).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["r2"], ["g2"], name="gap"),
             helper.make_node("Flatten", ["g2"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")]
    model = make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init)
    x = images(8, 96, 8)
    plain, fitted = convert(model, x, False), convert(model, x, True)
    assert any(n.op_type == "MaxPool" and n.domain == "onnx2snn" for n in fitted.model.graph.node)
    assert output_error(fitted, model, x, 8) < output_error(plain, model, x, 8)
