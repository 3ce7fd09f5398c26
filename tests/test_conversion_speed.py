"""The fast calibration machinery (docs/conversion_speed.md) computes exactly what the plain one does:
work units of any size, bit-packed spike trains, float or int8 spike buffers, SpikeNorm's single pass
against a two-pass reference, and the progress output."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods import layerwise, spikenorm
from onnx2snn.converter.methods.common import MIN_THRESHOLD
from onnx2snn.converter.progress import Progress, reporting
from onnx2snn.ops.neurons import neuron_scan
from onnx2snn.runtime.network import SpikingNetwork

from helpers import make_model, small_cnn, tensor

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


def images(seed: int, n: int = 40, size: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32))


def parameters(model) -> dict[str, dict[str, list[float]]]:
    return {n.name: {a.name: helper.get_attribute_value(a) for a in n.attribute
                     if a.name in ("threshold", "v_init", "bias")}
            for n in model.graph.node if n.op_type == "IF"}


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_neuron_scan_gives_the_same_spikes_into_float_and_int8_buffers(reset):
    generator = torch.Generator().manual_seed(1)
    current = torch.randn(13, 4, 5, 3, generator=generator)
    threshold = torch.rand(5, 1, generator=generator) + 0.2
    bias = 0.1 * torch.randn(5, 1, generator=generator)
    v0 = torch.rand(4, 5, 3, generator=generator)
    as_float, v_float, _ = neuron_scan(current, v0.clone(), threshold, reset=reset, bias=bias,
                                       out=torch.empty(13, 4, 5, 3))
    as_int8, v_int8, _ = neuron_scan(current, v0.clone(), threshold, reset=reset, bias=bias,
                                     out=torch.empty(13, 4, 5, 3, dtype=torch.int8))
    stepwise, v_step = [], v0.clone()
    for t in range(13):  # one step at a time: the state carries over exactly
        spikes, v_step, _ = neuron_scan(current[t:t + 1], v_step, threshold, reset=reset, bias=bias)
        stepwise.append(spikes[0])
    assert torch.equal(as_float, as_int8.float()) and torch.equal(as_float, torch.stack(stepwise))
    assert torch.equal(v_float, v_int8) and torch.equal(v_float, v_step)
    assert 0 < float(as_float.mean()) < 1


@pytest.mark.parametrize("timesteps", [5, 8, 21])
def test_bit_packed_trains_round_trip(timesteps):
    spikes = (torch.rand(timesteps, 6, 4, 3, 3, generator=torch.Generator().manual_seed(timesteps)) > 0.6)
    spikes = spikes.to(torch.int8)
    store = layerwise.BitTrains(timesteps, spikes.shape[1:], "cpu")
    assert store.bits.shape[0] == -(-timesteps // 8)
    for images in (slice(0, 4), slice(4, 6)):  # written in pieces of time and images, in any order
        for t0 in range(0, timesteps, 3):
            store.write(t0, images, spikes[t0:t0 + 3, images])
    back = torch.empty(spikes.shape)
    store.read_into(0, slice(None), back)
    assert torch.equal(back, spikes.float())
    part = torch.empty(2, 2, 4, 3, 3)
    store.read_into(timesteps - 2, slice(4, 6), part)
    assert torch.equal(part, spikes[timesteps - 2:, 4:6].float())


@pytest.mark.parametrize("spec", ["auto", "spikenorm", "auto+signed"])
def test_work_unit_size_does_not_change_the_result(rng, monkeypatch, spec):
    """Tiny work units (one image, a few steps) give exactly the parameters of one unit per chunk."""
    model, x = small_cnn(rng, batchnorm=True), images(11)
    options = ConversionOptions(threshold=spec, calibration_timesteps=12, batch_size=16)
    whole = parameters(convert_model(model, x, options).model)
    monkeypatch.setattr(layerwise, "WORK_ELEMENTS", 100)
    units = parameters(convert_model(model, x, options).model)
    assert units == whole


def test_units_cover_every_step_and_image_once(rng, monkeypatch):
    model, x = small_cnn(rng), images(12, n=10)
    network = SpikingNetwork(convert_model(model, x, ConversionOptions(threshold="max")).model)
    run = layerwise.LayerwiseRun(network, [x], timesteps=11)
    node = run.order[0]
    monkeypatch.setattr(layerwise, "WORK_ELEMENTS", 3 * run.elements(node))
    for time_outer in (False, True):
        covered = torch.zeros(11, 10, dtype=torch.int64)
        for t0, t1, group in run.units(node, 0, time_outer):
            covered[t0:t1, group] += 1
        assert bool((covered == 1).all())


def test_calibration_reports_every_layer(rng):
    model, x = small_cnn(rng), images(13)

    class Recorder(Progress):
        def __init__(self):
            self.events = []

        def start(self, total, description):
            self.events.append(("start", total, description))

        def advance(self, layer):
            self.events.append(("advance", layer))

    for spec in ("auto", "spikenorm"):
        recorder = Recorder()
        with reporting(recorder):
            conversion = convert_model(model, x, ConversionOptions(threshold=spec, calibration_timesteps=4))
        layers = [n.name for n in conversion.model.graph.node if n.op_type == "IF"]
        assert recorder.events[0] == ("start", len(layers), f"calibrating ({spec})")
        assert [e[1] for e in recorder.events[1:]] == layers


def _convert(small_cnn_file, tiny_images, tmp_path, *extra):
    return subprocess.run([sys.executable, "-m", "onnx2snn", *extra, "convert", str(small_cnn_file), "-o",
                           str(tmp_path / "snn.onnx"), "--data", str(tiny_images), "--mean", MEAN, "--std", STD,
                           "--calib", "12", "--calib-timesteps", "4"],
                          check=False, capture_output=True, text=True, timeout=300)


def test_progress_only_when_asked_on_a_non_terminal(tmp_path, small_cnn_file, tiny_images):
    plain = _convert(small_cnn_file, tiny_images, tmp_path)
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
    bar = subprocess.run([sys.executable, "-m", "onnx2snn", "-v", "convert", str(small_cnn_file), "-o",
                          str(tmp_path / "snn.onnx"), "--data", str(tiny_images), "--mean", MEAN, "--std", STD,
                          "--calib", "12", "--calib-timesteps", "4", "--progress"],
                         check=False, capture_output=True, text=True, timeout=300)
    assert bar.returncode == 0, bar.stderr
    assert "calibrating (auto)" in bar.stderr and "2/2" in bar.stderr and "layer" in bar.stderr
    assert bar.stderr.count("calibrated ") == 2  # -v: one line per layer
    quiet = subprocess.run([sys.executable, "-m", "onnx2snn", "-v", "convert", str(small_cnn_file), "-o",
                            str(tmp_path / "snn.onnx"), "--data", str(tiny_images), "--mean", MEAN, "--std", STD,
                            "--calib", "12", "--calib-timesteps", "4", "--progress", "--quiet"],
                           check=False, capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0 and "calibrat" not in quiet.stderr, quiet.stderr


def residual_clip_cnn(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv-ReLU, then Conv-Clip(0, 0.3) added to it (a residual join whose clip the maximum passes),
    ReLU, AvgPool, Conv-ReLU, GlobalAveragePool, Gemm, on [N, 3, 8, 8]."""
    node = helper.make_node
    init = {"w1": rng.normal(0, 0.4, (6, 3, 3, 3)).astype(np.float32), "b1": rng.normal(0, 0.1, 6).astype(np.float32),
            "w2": rng.normal(0, 0.3, (6, 6, 3, 3)).astype(np.float32), "lo": np.array(0, np.float32),
            "hi": np.array(0.3, np.float32), "w3": rng.normal(0, 0.3, (8, 6, 3, 3)).astype(np.float32),
            "wf": rng.normal(0, 0.5, (10, 8)).astype(np.float32), "bf": rng.normal(0, 0.1, 10).astype(np.float32)}
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             node("Relu", ["c1"], ["r1"], name="relu1"),
             node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
             node("Clip", ["c2", "lo", "hi"], ["k2"], name="relu6"),
             node("Add", ["k2", "r1"], ["s"], name="join"), node("Relu", ["s"], ["r3"], name="relu3"),
             node("AveragePool", ["r3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             node("Conv", ["p3", "w3"], ["c4"], pads=[1, 1, 1, 1], name="conv3"),
             node("Relu", ["c4"], ["r4"], name="relu4"), node("GlobalAveragePool", ["r4"], ["g"], name="gap"),
             node("Flatten", ["g"], ["f"], name="flatten"),
             node("Gemm", ["f", "wf", "bf"], ["y"], transB=1, name="fc")]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init)


def dense(trains, timesteps: int) -> torch.Tensor:
    if isinstance(trains, layerwise.BitTrains):
        out = torch.empty((timesteps, *trains.bits.shape[1:]))
        trains.read_into(0, slice(None), out)
        return out
    return trains.float()


def two_pass_spikenorm(network: SpikingNetwork, x: torch.Tensor, timesteps: int, batch_size: int):
    """The reference: each layer's largest current over every work unit first, then its spike trains
    simulated at that threshold. Returns the thresholds and every stored layer's trains."""
    run = layerwise.LayerwiseRun(network, list(x.split(batch_size)), timesteps)
    run.track_ann = False
    thresholds, stored = {}, {}
    for node in run.order:
        layer = network.layers[node]
        if not layerwise.is_neuron(layer):
            run.pass_through(node)
            continue
        peak = max(float(run.currents(node, chunk, t0, t1, group).max())
                   for chunk in range(len(run.chunks)) for t0, t1, group in run.units(node, chunk))
        threshold = max(peak, MIN_THRESHOLD)
        if layer.clip_max is not None:
            threshold = min(threshold, layer.clip_max)
        layer.set_threshold([threshold])
        thresholds[network.node_names[node]] = np.array([threshold], np.float32)
        trains = [run.neuron_trains(node, chunk) for chunk in range(len(run.chunks))] if run.uses[node] else None
        if trains is not None:
            stored[network.node_names[node]] = [dense(t, timesteps) for t in trains]
        run.record(node, [], trains)
    return thresholds, stored


def natural_order(run, node, groups):
    return list(range(len(groups)))


def reversed_order(run, node, groups):
    return list(reversed(range(len(groups))))


def maximum_last(run, node, groups):
    """Ascending by the groups' largest currents: every group but the last one is simulated below the
    layer's maximum and must be simulated again."""
    peaks = [max(float(run.currents(node, chunk, t0, t1, images).max()) for t0, t1 in times)
             for chunk, images, times in groups]
    return sorted(range(len(groups)), key=lambda index: peaks[index])


@pytest.mark.parametrize("order", [None, natural_order, reversed_order, maximum_last])
@pytest.mark.parametrize("work_elements, kept_bytes", [(4000, 0), (18432, 300_000), (1 << 21, 256 * 1024**2)])
@pytest.mark.parametrize("builder", [small_cnn, residual_clip_cnn])
def test_spikenorm_matches_the_two_pass_reference(monkeypatch, builder, work_elements, kept_bytes, order):
    """Thresholds and every stored spike train exactly as the two-pass reference gives them, for any
    work-unit size, memory kept and group order; with the maximum in the last group, the groups
    simulated below it are simulated again (skipping that gives other trains and thresholds)."""
    model, x, timesteps, batch_size = builder(np.random.default_rng(5)), images(14, n=24), 20, 10
    network = SpikingNetwork(convert_model(model, x, ConversionOptions(threshold="max")).model)
    monkeypatch.setattr(layerwise, "WORK_ELEMENTS", work_elements)
    expected_thresholds, expected_trains = two_pass_spikenorm(network, x, timesteps, batch_size)

    monkeypatch.setattr(spikenorm, "KEPT_CURRENT_BYTES", kept_bytes)
    if order is not None:
        monkeypatch.setattr(spikenorm, "group_order", order)
    stored, simulated = {}, []
    record, group_trains = layerwise.LayerwiseRun.record, layerwise.LayerwiseRun.group_trains

    def recording(run, node, ann, trains):
        if trains is not None:
            stored[run.network.node_names[node]] = [dense(t, run.timesteps) for t in trains]
        record(run, node, ann, trains)

    def counting(run, node, chunk, images, currents, trains=None):
        simulated.append((node, chunk, images.start))
        return group_trains(run, node, chunk, images, currents, trains)

    monkeypatch.setattr(layerwise.LayerwiseRun, "record", recording)
    monkeypatch.setattr(layerwise.LayerwiseRun, "group_trains", counting)
    network = SpikingNetwork(convert_model(model, x, ConversionOptions(threshold="max")).model)
    thresholds = spikenorm.spikenorm_thresholds(network, x, timesteps, batch_size)

    assert thresholds.keys() == expected_thresholds.keys()
    for name, value in expected_thresholds.items():
        assert np.array_equal(thresholds[name], value), name
    assert stored.keys() == expected_trains.keys() and stored
    for name, trains in expected_trains.items():
        assert all(torch.equal(a, b) for a, b in zip(stored[name], trains, strict=True)), name
    if builder is residual_clip_cnn:  # the clip caps the join's input layer
        assert any(v[0] == np.float32(0.3) for v in thresholds.values())
    if order is maximum_last and kept_bytes < 256 * 1024**2:  # groups simulated twice, as they must be
        assert len(simulated) > len(set(simulated))
    if kept_bytes == 256 * 1024**2:  # every layer fits: simulated once, at its maximum
        assert len(simulated) == len(set(simulated))
