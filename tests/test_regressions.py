"""Regression tests for five bugs that passed the earlier suite (issue 11): each fails on the code
before its fix. Everything here runs without ../shared."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx2snn.converter.convert import ConversionOptions, convert
from onnx2snn.data import load_split, to_tensor
from onnx2snn.dialect import load_model
from onnx2snn.errors import ConfigError, Onnx2SnnError
from onnx2snn.evaluation import ann_predictions, evaluate
from onnx2snn.runtime import SpikingNetwork, load

from helpers import make_model, nhwc_input, run_onnxruntime, small_cnn, tensor

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "onnx2snn", *map(str, args)], capture_output=True, text=True,
                          check=False, timeout=300)


def convert_max(ann: Path, out: Path, data: Path, **options) -> Path:
    convert(ann, out, data, MEAN, STD, calibration_images=20,
            options=ConversionOptions(threshold="max", **options))
    return out


@pytest.fixture(scope="module")
def snn_file(tmp_path_factory, small_cnn_file, tiny_images) -> Path:
    return convert_max(small_cnn_file, tmp_path_factory.mktemp("snn") / "snn.onnx", tiny_images)


# -- 1. --device cuda: one clear error where there is no CUDA; the network moves with the data ------

@NO_CUDA
def test_convert_on_absent_cuda_is_one_clean_error(tmp_path, small_cnn_file, tiny_images):
    with pytest.raises(ConfigError, match="CUDA"):
        convert(small_cnn_file, tmp_path / "o.onnx", tiny_images, MEAN, STD, calibration_images=4, device="cuda")
    result = cli("convert", small_cnn_file, "-o", tmp_path / "o.onnx", "--data", tiny_images,
                 "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25", "--device", "cuda", "--threshold", "max")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().startswith("onnx2snn: error:") and "CUDA" in result.stderr
    assert not (tmp_path / "o.onnx").exists()


@NO_CUDA
def test_evaluate_and_demo_on_absent_cuda_are_the_same_clean_error(snn_file, tiny_images, tmp_path):
    from onnx2snn.cli.demo import run_demo

    with pytest.raises(ConfigError, match="CUDA"):
        evaluate(snn_file, tiny_images, timesteps=[2], device="cuda")
    with pytest.raises(ConfigError, match="CUDA"):  # before any data is looked for or downloaded
        run_demo(limit=10, timesteps=[2], out_dir=tmp_path, device="cuda")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "banana", ""])
def test_unknown_devices_are_config_errors(name):
    from onnx2snn.devices import resolve_device

    with pytest.raises(ConfigError, match="--device"):
        resolve_device(name)
    assert resolve_device("cpu") == torch.device("cpu")


def test_conversion_runs_where_its_calibration_tensor_lives(rng, monkeypatch):
    """convert_model builds the network on the calibration images' device: every buffer follows."""
    from onnx2snn.converter import convert as convert_module

    moved = []
    original = SpikingNetwork.to

    def recording_to(self, *args, **kwargs):
        moved.append(args[0] if args else kwargs.get("device"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpikingNetwork, "to", recording_to)
    calibration = torch.from_numpy(rng.uniform(-1, 1, (6, 3, 8, 8)).astype(np.float32))
    convert_module.convert_model(small_cnn(rng), calibration, ConversionOptions(threshold="max"))
    assert torch.device("cpu") in [torch.device(d) for d in moved if d is not None], moved


# -- 2. resume: the key holds every option that changes results ----------------------------------

def interrupted(monkeypatch, after_batches: int):
    """Make the next evaluation die (as a kill would) after ``after_batches`` batches."""
    original, calls = SpikingNetwork.simulate, {"n": 0}

    def simulate(self, *args, **kwargs):
        if calls["n"] == after_batches:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SpikingNetwork, "simulate", simulate)
    return calls


def test_interrupted_and_resumed_evaluation_equals_an_uninterrupted_one(snn_file, tiny_images, tmp_path, monkeypatch):
    options = {"timesteps": [3, 9], "limit": 40, "batch_size": 10, "count_spikes": True}
    whole = evaluate(snn_file, tiny_images, **options)
    checkpoint = tmp_path / "run.partial"
    with monkeypatch.context() as patch:
        interrupted(patch, after_batches=2)
        with pytest.raises(KeyboardInterrupt):
            evaluate(snn_file, tiny_images, checkpoint=checkpoint, **options)
    assert json.loads(checkpoint.read_text())["state"]["done"] == 20
    with monkeypatch.context() as patch:
        calls = interrupted(patch, after_batches=99)
        resumed = evaluate(snn_file, tiny_images, checkpoint=checkpoint, **options)
    assert calls["n"] == 2  # only the two batches left were simulated
    assert resumed.snn_accuracy == whole.snn_accuracy
    assert resumed.spikes_per_image == pytest.approx(whole.spikes_per_image, rel=1e-6) and whole.spikes_per_image > 0


@pytest.mark.parametrize("first, second", [
    ({"count_spikes": True}, {"count_spikes": True, "mean": "0.2,0.3,0.4"}),
    ({"count_spikes": True}, {"count_spikes": True, "std": "0.5,0.5,0.5"}),
    ({"count_spikes": True}, {"count_spikes": True, "timesteps": [5]}),
    ({}, {"count_spikes": True}),
])
def test_changed_options_force_a_fresh_run(snn_file, tiny_images, tmp_path, first, second):
    """A finished checkpoint of one configuration, then a rerun with changed options: the rerun must
    give what a fresh run of the new options gives (the spike count fingerprints the inputs)."""
    options = {"timesteps": [4], "limit": 20, "batch_size": 10}
    checkpoint = tmp_path / "run.partial"
    old = evaluate(snn_file, tiny_images, checkpoint=checkpoint, **{**options, **first})
    assert checkpoint.is_file()  # evaluate keeps it; the CLI removes it after writing the JSON
    fresh = evaluate(snn_file, tiny_images, **{**options, **second})
    assert fresh.spikes_per_image > 0 and fresh.spikes_per_image != old.spikes_per_image
    again = evaluate(snn_file, tiny_images, checkpoint=checkpoint, **{**options, **second})
    assert again.spikes_per_image == pytest.approx(fresh.spikes_per_image, rel=1e-6)
    assert again.snn_accuracy == fresh.snn_accuracy


# -- 3. a float16 ANN is fed float16 --------------------------------------------------------------

def as_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(model)
    return model


def test_float16_ann_is_fed_float16(tmp_path, rng, tiny_images):
    half = tmp_path / "half.onnx"
    half.write_bytes(as_float16(small_cnn(rng)).SerializeToString())
    x = to_tensor(load_split(tiny_images, "test", limit=20).images, MEAN, STD).numpy()
    expected = run_onnxruntime(onnx.load(str(half)), x.astype(np.float16)).argmax(1)
    np.testing.assert_array_equal(ann_predictions(half, x), expected)
    snn = convert_max(half, tmp_path / "snn.onnx", tiny_images)  # a float16 ANN converts too
    result = evaluate(snn, tiny_images, timesteps=[4], limit=20, ann_path=half)
    assert result.ann_accuracy == pytest.approx(
        float((expected == load_split(tiny_images, "test", limit=20).labels).mean()))


def test_an_ann_with_integer_input_is_one_clean_error(tmp_path, rng):
    model = small_cnn(rng)
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64
    path = tmp_path / "int.onnx"
    path.write_bytes(model.SerializeToString())
    with pytest.raises(Onnx2SnnError):
        ann_predictions(path, np.zeros((2, 3, 8, 8), np.float32))


# -- 4. 3-D convolutions: channels_last only where the rank is 4 ---------------------------------

def conv3d_model(rng: np.random.Generator) -> onnx.ModelProto:
    """[N, 3, 8, 8] -> a depth axis -> Conv3d -> ReLU -> Conv3d -> ReLU -> pool -> Gemm."""
    init = {"axes": np.array([2], np.int64),
            "w1": rng.normal(0, 0.4, (6, 3, 1, 3, 3)).astype(np.float32),
            "b1": rng.normal(0, 0.1, 6).astype(np.float32),
            "w2": rng.normal(0, 0.3, (6, 6, 1, 3, 3)).astype(np.float32),
            "b2": rng.normal(0, 0.1, 6).astype(np.float32),
            "wf": rng.normal(0, 0.5, (10, 6)).astype(np.float32), "bf": rng.normal(0, 0.1, 10).astype(np.float32)}
    nodes = [helper.make_node("Unsqueeze", ["x", "axes"], ["x5"]),
             helper.make_node("Conv", ["x5", "w1", "b1"], ["c1"], pads=[0, 1, 1, 0, 1, 1], name="conv3d_1"),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[0, 1, 1, 0, 1, 1], name="conv3d_2"),
             helper.make_node("Relu", ["c2"], ["r2"]),
             helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1)]
    return make_model(nodes, [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 10])], init)


def test_a_3d_conv_network_converts_and_evaluates(tmp_path, rng, tiny_images):
    ann = tmp_path / "conv3d.onnx"
    ann.write_bytes(conv3d_model(rng).SerializeToString())
    snn = convert_max(ann, tmp_path / "snn.onnx", tiny_images)
    x = to_tensor(load_split(tiny_images, "test", limit=8).images, MEAN, STD)
    np.testing.assert_allclose(load(snn).analog(x).numpy(), run_onnxruntime(load_model(ann), x.numpy()),
                               rtol=1e-5, atol=1e-5)
    result = evaluate(snn, tiny_images, timesteps=[4, 16], limit=20, ann_path=ann)
    assert result.n == 20 and set(result.snn_accuracy) == {4, 16}


# -- 5. NHWC input (Keras via tf2onnx) ------------------------------------------------------------

def test_layout_is_read_from_the_graph(rng):
    from onnx2snn.data.layout import detect_layout

    nchw = small_cnn(rng)
    assert detect_layout(nchw) == "nchw"
    assert detect_layout(nhwc_input(nchw)) == "nhwc"
    unknown = nhwc_input(nchw)
    for dim in unknown.graph.input[0].type.tensor_type.shape.dim[1:]:
        dim.dim_param = "?"  # no declared sizes: the leading Transpose(0, 3, 1, 2) gives it away
    assert detect_layout(unknown) == "nhwc"


def test_nhwc_model_converts_evaluates_and_records_its_layout(tmp_path, tiny_images):
    ann = tmp_path / "keras.onnx"
    ann.write_bytes(nhwc_input(small_cnn(np.random.default_rng(0))).SerializeToString())
    snn = convert_max(ann, tmp_path / "snn.onnx", tiny_images)
    metadata = {p.key: p.value for p in onnx.load(str(snn)).metadata_props}
    assert metadata["onnx2snn.input_layout"] == "nhwc"
    x = to_tensor(load_split(tiny_images, "test", limit=8).images, MEAN, STD).permute(0, 2, 3, 1).contiguous()
    np.testing.assert_allclose(load(snn).analog(x).numpy(), run_onnxruntime(load_model(ann), x.numpy()),
                               rtol=1e-5, atol=1e-5)
    result = evaluate(snn, tiny_images, timesteps=[64], limit=40, ann_path=ann)
    assert result.settings["input_layout"] == "nhwc" and result.ann_accuracy is not None
    # the same network taking NCHW, converted alike, scores the same: the layout changed only the feed
    nchw = tmp_path / "nchw.onnx"
    nchw.write_bytes(small_cnn(np.random.default_rng(0)).SerializeToString())
    same = evaluate(convert_max(nchw, tmp_path / "snn_nchw.onnx", tiny_images), tiny_images, timesteps=[64],
                    limit=40, ann_path=nchw)
    assert (same.ann_accuracy, same.snn_accuracy) == (result.ann_accuracy, result.snn_accuracy)


def test_layout_flag_overrides_detection(tmp_path, rng, tiny_images):
    ann = tmp_path / "keras.onnx"
    ann.write_bytes(nhwc_input(small_cnn(rng)).SerializeToString())
    with pytest.raises(ConfigError, match="expects input"):  # forced to the wrong layout: one clear error
        convert_max(ann, tmp_path / "bad.onnx", tiny_images, layout="nchw")
    with pytest.raises(ConfigError, match="layout must be"):
        convert_max(ann, tmp_path / "bad.onnx", tiny_images, layout="hwcn")
    result = cli("convert", ann, "-o", tmp_path / "snn.onnx", "--data", tiny_images, "--mean", "0.5,0.5,0.5",
                 "--std", "0.25,0.25,0.25", "--threshold", "max", "--calib", 8, "--layout", "nhwc")
    assert result.returncode == 0, result.stderr
    assert {p.key: p.value for p in onnx.load(str(tmp_path / "snn.onnx")).metadata_props}[
        "onnx2snn.input_layout"] == "nhwc"
    with pytest.raises(ConfigError, match="expects input"):
        evaluate(tmp_path / "snn.onnx", tiny_images, timesteps=[4], limit=10, layout="nchw")


@pytest.mark.slow
def test_keras_style_builtin_model_reaches_its_ann_at_t128(tmp_path, cifar10):
    """The built-in small CNN as tf2onnx would write it (NHWC input, Transpose in front): its SNN
    is within 1 point of its ANN at T=128 on 500 class-balanced test images (measured: ANN 82.4%,
    SNN 81.8%, the same as the NCHW original)."""
    from onnx2snn.cli.demo import BUILTIN_MODEL, stored_normalization

    mean, std = stored_normalization(BUILTIN_MODEL)
    ann = tmp_path / "keras_style.onnx"
    ann.write_bytes(nhwc_input(onnx.load(str(BUILTIN_MODEL))).SerializeToString())
    snn = tmp_path / "snn.onnx"
    convert(ann, snn, cifar10, mean, std, calibration_images=256,
            options=ConversionOptions(threshold="percentile:99.9"))
    assert {p.key: p.value for p in onnx.load(str(snn)).metadata_props}["onnx2snn.input_layout"] == "nhwc"
    result = evaluate(snn, cifar10, timesteps=[128], limit=500, ann_path=ann)
    assert result.ann_accuracy > 0.75
    assert abs(result.snn_accuracy[128] - result.ann_accuracy) <= 0.01, (result.ann_accuracy, result.snn_accuracy)


@pytest.mark.parametrize("dims, transposed, layout", [
    (["N", 3, 32, 32], False, "nchw"), (["N", 32, 32, 3], False, "nhwc"), (["N", 1, 28, 28], False, "nchw"),
    (["N", 28, 28, 1], False, "nhwc"), (["N", 4, 4, 3], False, "nhwc"), (["N", 3, 4, 4], False, "nchw"),
    (["N", "H", "W", "C"], True, "nhwc"), (["N", "C", "H", "W"], False, "nchw"), (["N", 3, 3, 3], True, "nhwc"),
])
def test_layout_detection_cases(dims, transposed, layout):
    from onnx2snn.data.layout import detect_layout

    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2])] if transposed else \
        [helper.make_node("Identity", ["x"], ["t"])]
    nodes.append(helper.make_node("Relu", ["t"], ["y"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    assert detect_layout(helper.make_model(graph)) == layout
