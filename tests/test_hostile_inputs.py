"""Every hostile or broken model gets one typed error: one line on stderr, exit status 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx2snn import errors
from onnx2snn.cli.main import main
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.validate import validate_convertible
from onnx2snn.dialect import load_model, parse_model

from hostile_cases import CASES, MEAN, STD, cnn, make_image_folder, single_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data"))


def convert_args(model: Path, out: Path, data: Path, extra=()) -> list[str]:
    return ["convert", str(model), "-o", str(out), "--data", str(data), "--mean", MEAN, "--std", STD,
            "--calib", "10", "--threshold", "max", *extra]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_prints_one_line_and_exits_2(case, tmp_path, tiny_data, capsys):
    folder = tmp_path / "models"
    folder.mkdir()
    model = case.build(folder)
    out = tmp_path / "out.onnx"
    status = main(convert_args(model, out, tiny_data, case.extra))
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("onnx2snn: error: "), lines
    assert case.expect in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_class(case, tmp_path, tiny_data):
    from onnx2snn.converter.convert import ConversionOptions, convert

    folder = tmp_path / "models"
    folder.mkdir()
    model = case.build(folder)
    memory = case.extra[1] if case.extra[:1] == ("--max-memory",) else None
    with pytest.raises(getattr(errors, case.error)):
        convert(model, tmp_path / "out.onnx", tiny_data, [0.5] * 3, [0.25] * 3, calibration_images=10,
                options=ConversionOptions(max_memory=memory))


def test_valid_model_converts(tmp_path, tiny_data, capsys):
    """The control: the unmodified model used by every case converts."""
    model = tmp_path / "model.onnx"
    model.write_bytes(cnn().SerializeToString())
    assert main(convert_args(model, tmp_path / "out.onnx", tiny_data)) == 0
    onnx.checker.check_model(onnx.load(tmp_path / "out.onnx"))


def test_external_data_inside_the_folder_is_read(tmp_path):
    from hostile_cases import _external

    path = _external(tmp_path, "weights.bin", make_file=True)
    loaded = load_model(path)
    weight = next(i for i in loaded.graph.initializer if i.name == "w1")
    expected = next(i for i in cnn().graph.initializer if i.name == "w1")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weight), onnx.numpy_helper.to_array(expected))


@pytest.mark.parametrize("location", ["sub/../../weights.bin", "\x00weights.bin", "", "."])
def test_odd_external_locations_are_refused(tmp_path, location):
    from hostile_cases import _external

    (tmp_path / "weights.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(errors.InvalidModelError):
        load_model(_external(tmp_path, location))


@pytest.mark.parametrize("offset, length", [("-5", "864"), ("0", "99999"), ("zero", "864"), ("5000", None)])
def test_external_data_ranges_are_checked(tmp_path, offset, length):
    from hostile_cases import _external

    path = _external(tmp_path, "weights.bin", make_file=True)
    model = onnx.load(path, load_external_data=False)
    weight = next(i for i in model.graph.initializer if i.name == "w1")
    del weight.external_data[:]
    for key, value in (("location", "weights.bin"), ("offset", offset), ("length", length)):
        if value is not None:
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    path.write_bytes(model.SerializeToString())
    with pytest.raises(errors.InvalidModelError):
        load_model(path)


def test_in_memory_models_are_validated_too():
    """normalize() validates models that never went through load_model."""
    model = cnn()
    model.graph.node[0].input[1] = "nowhere"
    with pytest.raises(errors.InvalidModelError, match="missing initializer"):
        normalize(model)


def test_unsorted_but_acyclic_graph_is_not_called_a_cycle():
    """ONNX requires topological order: refused, but for what it is, not as a cycle."""
    model = cnn()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))
    with pytest.raises(errors.InvalidModelError, match="topologically sorted") as raised:
        validate_convertible(model)
    assert "cycle" not in str(raised.value)


def test_parse_model_names_the_wrong_kind():
    with pytest.raises(errors.InvalidModelError, match="GraphProto"):
        parse_model(cnn().graph.SerializeToString(), "bytes")


def test_cli_error_has_no_traceback_in_a_real_process(tmp_path):
    """The whole path: a subprocess, garbage input, one line, status 2."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    result = subprocess.run([sys.executable, "-m", "onnx2snn", "inspect", str(bad)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert "not an ONNX model" in result.stderr


# -- memory budget ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("4GB", 4 * 1024**3), ("512MiB", 512 * 1024**2), ("1.5g", 3 * 1024**3 // 2),
                                            ("1000", 1000), (None, 4 * 1024**3), (2048, 2048)])
def test_parse_size(text, expected):
    from onnx2snn.sizes import parse_size

    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "4 parsecs", "-1GB", "0", "GB"])
def test_parse_size_refuses(text):
    from onnx2snn.sizes import parse_size

    with pytest.raises(errors.ConfigError):
        parse_size(text)


def test_a_tight_budget_lowers_the_batch_and_keeps_the_result():
    """Max thresholds do not depend on the batch size, so a smaller batch must give the same file."""
    import torch

    from onnx2snn.converter.budget import fit_calibration
    from onnx2snn.converter.convert import ConversionOptions, convert_model
    from onnx2snn.resources import estimate_sizes
    from onnx2snn.runtime.network import SpikingNetwork

    model, x = cnn(), torch.randn(40, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    per_image = estimate_sizes(normalize(model).model, (3, 8, 8)).per_image
    budget = 2 * per_image * 5  # room for five images (the estimate counts each twice for max)
    canonical = normalize(model).model
    options = ConversionOptions(threshold="max", batch_size=40, max_memory=budget)
    fitted = fit_calibration(canonical, SpikingNetwork(canonical), x, options, options.validate())
    assert fitted.batch_size == 5
    small = convert_model(model, x, ConversionOptions(threshold="max", batch_size=40, max_memory=budget))
    large = convert_model(model, x, ConversionOptions(threshold="max", batch_size=40))
    assert small.model.SerializeToString(deterministic=True) == large.model.SerializeToString(deterministic=True)


def test_spikenorm_spike_trains_over_budget_fail_before_calibrating():
    import torch

    from onnx2snn.converter.convert import ConversionOptions, convert_model

    with pytest.raises(errors.ResourceError, match="even with batches of one image"):
        convert_model(cnn(), torch.randn(64, 3, 8, 8),
                      ConversionOptions(threshold="spikenorm", calibration_timesteps=4096, max_memory="16MB"))


def test_evaluate_with_a_budget_too_small(tmp_path, tiny_data):
    from onnx2snn.evaluation import evaluate

    model = tmp_path / "model.onnx"
    model.write_bytes(cnn().SerializeToString())
    snn = tmp_path / "snn.onnx"
    assert main(convert_args(model, snn, tiny_data)) == 0
    with pytest.raises(errors.ResourceError, match="memory budget"):
        evaluate(snn, tiny_data, timesteps=[4], max_memory="20KB")
    result = evaluate(snn, tiny_data, timesteps=[4], max_memory="400KB", batch_size=250)
    assert result.settings["batch_size"] < 30 and result.n == 30
