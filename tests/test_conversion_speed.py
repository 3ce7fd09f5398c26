"""The fast calibration machinery (docs/conversion_speed.md) computes exactly what the plain one does:
work units of any size, bit-packed spike trains, float or int8 spike buffers, and the progress output."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from onnx2snn.converter.convert import ConversionOptions, convert_model
from onnx2snn.converter.methods import layerwise
from onnx2snn.converter.progress import Progress, reporting
from onnx2snn.ops.neurons import neuron_scan
from onnx2snn.runtime.network import SpikingNetwork

from helpers import small_cnn

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


def images(seed: int, n: int = 40, size: int = 8) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, 3, size, size)).astype(np.float32))


def parameters(model) -> dict[str, dict[str, list[float]]]:
    from onnx import helper

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
