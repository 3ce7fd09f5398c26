"""Every hostile or broken model gets one typed error: one line on stderr, exit status 2."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from hostile_cases import CASES, MEAN, STD, cnn, make_image_folder, single_thread  # noqa: F401 (autouse fixture)
from onnx2snn import errors
from onnx2snn.cli.main import main
from onnx2snn.converter.normalize import normalize
from onnx2snn.converter.validate import validate_convertible
from onnx2snn.onnx_io import load_model, parse_model


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
