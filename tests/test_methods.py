"""Low-latency conversion methods (docs/low_latency.md) on small random models."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import helper

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods import calibrate as calibrate_module
from onnx2snn.converter.methods.spec import ThresholdMethod
from onnx2snn.errors import ConfigError
from onnx2snn.ops.neurons import signed_burst_step
from onnx2snn.runtime.network import SpikingNetwork

from helpers import make_model, small_cnn, tensor


def one_layer_model(rng: np.random.Generator):
    """Conv -> ReLU -> Flatten: the output is the neuron layer itself, so its error is measurable directly."""
    init = {"w": rng.normal(0, 0.5, (6, 3, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.3, 6).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["y"], name="flatten")]
    return make_model(nodes, [tensor("x", ["N", 3, 6, 6])], [tensor("y", ["N", 216])], init)


def maps(flat: torch.Tensor) -> torch.Tensor:
    return flat.reshape(len(flat), 6, 6, 6)


def images(seed: int, n: int = 48, size: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32))


def convert(model, x, spec, timesteps=8):
    conversion = convert_model(model, x, ConversionOptions(threshold=spec, calibration_timesteps=timesteps,
                                                           batch_size=16))
    return conversion, SpikingNetwork(conversion.model)


@pytest.mark.parametrize("text, expected", [
    ("max", ThresholdMethod("max")),
    ("percentile:99.9+channel+vhalf+biascorr", ThresholdMethod("percentile", 99.9, channel=True, v_init="half",
                                                               bias_correction=True)),
    ("robust+scale+vopt", ThresholdMethod("robust", scale_search=True, v_init="opt")),
    ("auto", ThresholdMethod("auto")),
    ("auto+signed+burst:3", ThresholdMethod("auto", signed=True, burst=3)),
])
def test_parse_new_specs_and_round_trip(text, expected):
    method = ThresholdMethod.parse(text)
    assert method == expected
    assert ThresholdMethod.parse(str(method)) == method


@pytest.mark.parametrize("text", ["percentile:99+sideways", "spikenorm+channel", "auto+channel", "max+burst:0",
                                  "percentile:0", "", "max+"])
def test_parse_rejects_bad_specs(text):
    with pytest.raises(ConfigError):
        ThresholdMethod.parse(text)


def test_signed_spikes_need_soft_reset(rng):
    with pytest.raises(ConfigError, match="subtract"):
        convert_model(small_cnn(rng), images(0, 4), ConversionOptions(threshold="max+signed", reset="zero"))


def test_signed_burst_step_by_hand():
    theta = torch.tensor(1.0)
    v, count = torch.tensor([0.5]), torch.tensor([0.0])
    k, v, count = signed_burst_step(torch.tensor([2.7]), v, count, theta, signed=True, burst=2)
    assert k.tolist() == [2.0] and v.tolist() == pytest.approx([1.2]) and count.tolist() == [2.0]
    k, v, count = signed_burst_step(torch.tensor([-2.0]), v, count, theta, signed=True, burst=2)
    assert k.tolist() == [-1.0] and v.tolist() == pytest.approx([0.2])  # v = -0.8 < 0: one spike undone
    k, v, count = signed_burst_step(torch.tensor([-5.0]), v, count, theta, signed=True, burst=2)
    assert k.tolist() == [-1.0] and count.tolist() == [0.0]  # never below zero net spikes
    k, _, _ = signed_burst_step(torch.tensor([-5.0]), v, count, theta, signed=True, burst=2)
    assert k.tolist() == [0.0]


@pytest.mark.parametrize("spec", ["percentile:99.9+channel+vhalf", "auto", "robust+biascorr+scale+signed"])
def test_conversion_is_deterministic(rng, spec):
    model, x = small_cnn(rng, batchnorm=True), images(1, 32)
    first, _ = convert(model, x, spec, timesteps=4)
    second, _ = convert(model, x, spec, timesteps=4)
    assert first.model.SerializeToString() == second.model.SerializeToString()


def test_channel_thresholds_have_one_value_per_channel(rng):
    model, x = small_cnn(rng), images(2)
    layer_wise, _ = convert(model, x, "percentile:99.9")
    channel_wise, network = convert(model, x, "percentile:99.9+channel")
    assert all(t.shape == (1,) for t in layer_wise.thresholds.values())
    assert all(t.shape == (8,) for t in channel_wise.thresholds.values())  # both conv layers have 8 channels
    for name, layer in network.neurons().items():  # written to the graph and read back
        np.testing.assert_allclose(layer.threshold.numpy(), channel_wise.thresholds[name], rtol=1e-6)


def test_vhalf_sets_half_threshold_and_fires_at_half_on_the_first_step(rng):
    model, x = one_layer_model(rng), images(3, size=6)
    _, zero = convert(model, x, "max+channel")
    _, half = convert(model, x, "max+channel+vhalf")
    layer = next(iter(half.neurons().values()))
    np.testing.assert_allclose(layer.v_init.numpy(), layer.threshold.numpy() / 2, rtol=1e-6)
    theta = layer.threshold.reshape(1, -1, 1, 1)
    current = maps(half.analog(x))  # ReLU of the input current, = the current where it is positive
    first_zero = maps(zero.simulate(x, 1).outputs[1])
    first_half = maps(half.simulate(x, 1).outputs[1])
    assert torch.equal(first_zero > 0, current >= theta)  # zero start: only inputs at the threshold fire
    assert torch.equal(first_half > 0, current >= theta / 2)  # half start: inputs at half of it fire
    assert (first_half > 0).sum() > (first_zero > 0).sum()


def test_bias_correction_reduces_the_mean_error_it_targets(rng):
    model, x = one_layer_model(rng), images(4, size=6)
    steps = 4

    def mean_error(spec):
        _, network = convert(model, x, spec, timesteps=steps)
        rate = network.simulate(x, steps).outputs[steps]
        per_channel = maps(rate - network.analog(x)).mean((0, 2, 3))
        return float(per_channel.abs().mean()), network

    plain, _ = mean_error("percentile:99.9+channel")
    corrected, network = mean_error("percentile:99.9+channel+biascorr")
    assert corrected < 0.5 * plain
    assert float(next(iter(network.neurons().values())).bias.abs().max()) > 0


def test_calibrated_methods_reduce_output_error_at_low_latency(rng):
    model, x, held_out = small_cnn(rng, batchnorm=True), images(5, 64), images(6, 64)

    def output_error(spec):
        _, network = convert(model, x, spec, timesteps=8)
        return float(((network.simulate(held_out, 8).outputs[8] - network.analog(held_out)) ** 2).mean())

    baseline = output_error("percentile:99.9")
    assert output_error("percentile:99.9+channel+vhalf") < baseline
    assert output_error("auto") < 0.5 * baseline


def test_auto_chooses_on_held_out_calibration_images(rng, monkeypatch):
    """Every choice of auto is scored on the held-out tail of the calibration images; fitted statistics
    (percentiles, the mean error for bias correction) come from the rest."""
    model, x = small_cnn(rng), images(7, 64)
    scored: list[tuple[int, ...]] = []
    original = calibrate_module.LayerCalibration.errors

    def spy(self, candidates, chunks):
        scored.append((candidates.k, tuple(chunks), tuple(self.select)))
        return original(self, candidates, chunks)

    monkeypatch.setattr(calibrate_module.LayerCalibration, "errors", spy)
    convert(model, x, "auto")
    held_out = [call for call in scored if call[0] > 1]  # calls that rank several candidates
    assert held_out and all(chunks == select for _, chunks, select in held_out)
    fit_calls = [(chunks, select) for k, chunks, select in scored if k == 1]
    assert fit_calls and all(not set(chunks) & set(select) for chunks, select in fit_calls)
    fit, select = calibrate_module.split_calibration(x, auto=True)
    assert len(select) == 16 and torch.equal(select, x[48:]) and torch.equal(fit, x[:48])


def test_signed_and_burst_attributes_survive_the_onnx_round_trip(rng):
    model, x = small_cnn(rng), images(8)
    conversion, network = convert(model, x, "percentile:99.9+vhalf+signed+burst:2", timesteps=4)
    kinds = {a.name for node in conversion.model.graph.node if node.op_type == "IF" for a in node.attribute}
    assert {"signed", "burst"} <= kinds
    assert all(layer.signed and layer.burst == 2 for layer in network.neurons().values())
    rate = network.simulate(x, 32).outputs[32]
    assert float(((rate - network.analog(x)) ** 2).mean()) < 1e-2


def max_pool_cnn(rng: np.random.Generator):
    """Conv-ReLU-MaxPool-Conv-ReLU-GlobalAvgPool-Flatten-Gemm: a spiking max-pool gate (a stateful node
    that is not a neuron) sits between two neuron layers."""
    init = {"w1": rng.normal(0, 0.4, (6, 3, 3, 3)).astype(np.float32),
            "w2": rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32),
            "wf": rng.normal(0, 0.5, (10, 6)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf"], ["y"], transB=1)]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init)


@pytest.mark.parametrize("spec", ["auto", "spikenorm", "percentile:99.9+channel+vhalf"])
def test_methods_step_through_spiking_max_pool(rng, spec):
    model, x = max_pool_cnn(rng), images(9, 32)
    _, network = convert(model, x, spec)
    assert len(network.neurons()) == 2
    error = float(((network.simulate(x, 32).outputs[32] - network.analog(x)) ** 2).mean())
    assert error < 0.05 * float(network.analog(x).var())


def test_auto_is_the_default_of_convert():
    from onnx2snn.cli.main import build_parser

    args = build_parser().parse_args(["convert", "a.onnx", "-o", "b.onnx", "--data", "d", "--mean", "0", "--std", "1"])
    assert args.threshold == "auto" and ConversionOptions().threshold == "auto"
