"""The CLI contract: convert and evaluate on a small model, and one clear error line for bad input."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import helper

from helpers import make_model, tensor

MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnx2snn", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx2snn: error:"), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_convert_then_evaluate(tmp_path, small_cnn_file, tiny_images):
    snn = tmp_path / "snn.onnx"
    result = cli("convert", small_cnn_file, "-o", snn, "--data", tiny_images, "--mean", MEAN, "--std", STD,
                 "--threshold", "max", "--calib", 20)
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(snn))
    onnx.checker.check_model(model)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["onnx2snn.threshold_method"] == "max"
    assert metadata["onnx2snn.calibration_images"] == "20"
    assert metadata["onnx2snn.input_mean"] == "0.5,0.5,0.5"
    assert len(metadata["onnx2snn.source_sha256"]) == 64
    neurons = [n for n in model.graph.node if n.domain == "onnx2snn"]
    assert len(neurons) == 2 and all(n.op_type == "IF" for n in neurons)

    out = tmp_path / "eval.json"
    result = cli("evaluate", snn, "--data", tiny_images, "-T", "4,8", "--limit", 15, "--ann", small_cnn_file,
                 "--json", out)
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 15
    assert 0 <= report["ann_accuracy"] <= 1
    assert set(report["snn_accuracy"]) == {"4", "8"}
    assert not (tmp_path / "eval.json.partial").exists()
    assert "precision" not in report  # float32, the default

    bf16 = tmp_path / "eval_bf16.json"
    result = cli("evaluate", snn, "--data", tiny_images, "-T", "4,8", "--limit", 15, "--precision", "bfloat16",
                 "--json", bf16)
    assert result.returncode == 0, result.stderr
    reduced = json.loads(bf16.read_text())
    assert reduced["precision"] == "bfloat16" and set(reduced["snn_accuracy"]) == {"4", "8"}

    fused = tmp_path / "eval_fused.json"
    result = cli("evaluate", snn, "--data", tiny_images, "-T", "4,8", "--limit", 15, "--fuse-neurons", "--json", fused)
    assert result.returncode == 0, result.stderr
    assert json.loads(fused.read_text())["snn_accuracy"] == report["snn_accuracy"]  # the same results


def test_inspect_reports_convertibility(small_cnn_file):
    result = cli("inspect", small_cnn_file)
    assert result.returncode == 0
    assert "convertible, 2 spiking layers" in result.stdout


def test_missing_model_file(tmp_path, tiny_images):
    result = cli("convert", tmp_path / "absent.onnx", "-o", tmp_path / "o.onnx", "--data", tiny_images,
                 "--mean", MEAN, "--std", STD)
    assert_one_line_error(result, "absent.onnx", "no such file")
    assert not (tmp_path / "o.onnx").exists()


def test_not_an_onnx_file(tmp_path, tiny_images):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffthis is not a protobuf" * 10)
    result = cli("convert", junk, "-o", tmp_path / "o.onnx", "--data", tiny_images, "--mean", MEAN, "--std", STD)
    assert_one_line_error(result, "junk.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_unsupported_ops_are_all_named(tmp_path, tiny_images, rng):
    w = rng.normal(0, 1, (4, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Sigmoid", ["r"], ["s"], name="gate"), helper.make_node("Tanh", ["s"], ["t"], name="squash"),
         helper.make_node("GlobalAveragePool", ["t"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])],
        [tensor("x", ["N", 3, 8, 8])], [tensor("y", ["N", 4])], {"w": w})
    path = tmp_path / "sigmoid.onnx"
    path.write_bytes(model.SerializeToString())
    result = cli("convert", path, "-o", tmp_path / "o.onnx", "--data", tiny_images, "--mean", MEAN, "--std", STD)
    assert_one_line_error(result, "'gate' (Sigmoid, opset 13)", "'squash' (Tanh, opset 13)", "Supported ops:")


def test_missing_data_folder(tmp_path, small_cnn_file):
    result = cli("convert", small_cnn_file, "-o", tmp_path / "o.onnx", "--data", tmp_path / "nowhere",
                 "--mean", MEAN, "--std", STD)
    assert_one_line_error(result, "nowhere", "not found")


def test_wrong_data_layout(tmp_path, small_cnn_file):
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "image.png").write_bytes(b"")
    result = cli("convert", small_cnn_file, "-o", tmp_path / "o.onnx", "--data", tmp_path / "flat",
                 "--mean", MEAN, "--std", STD)
    assert_one_line_error(result, "expected")


def test_mean_with_wrong_channel_count(tmp_path, small_cnn_file, tiny_images):
    result = cli("convert", small_cnn_file, "-o", tmp_path / "o.onnx", "--data", tiny_images,
                 "--mean", "0.5,0.5", "--std", STD)
    assert_one_line_error(result, "--mean has 2 values", "3 channels")


@pytest.mark.parametrize("option", [["--threshold", "median"], ["--reset", "sideways"]])
def test_bad_options(tmp_path, small_cnn_file, tiny_images, option):
    result = cli("convert", small_cnn_file, "-o", tmp_path / "o.onnx", "--data", tiny_images,
                 "--mean", MEAN, "--std", STD, *option)
    assert_one_line_error(result, option[1])
