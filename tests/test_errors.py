"""Library errors name the API parameter; the command line names its flag instead."""
from __future__ import annotations

import pytest
import torch

import onnx2snn
from onnx2snn.cli.main import FLAGS, build_parser, error_line
from onnx2snn.sizes import parse_size


@pytest.mark.parametrize("call, parameter", [
    (lambda: onnx2snn.ConversionOptions(reset="sideways").validate(), "reset"),
    (lambda: onnx2snn.ConversionOptions(calibration_timesteps=0).validate(), "calibration_timesteps"),
    (lambda: onnx2snn.ConversionOptions(threshold="median").validate(), "threshold"),
    (lambda: parse_size("lots"), "max_memory"),
    (lambda: onnx2snn.to_tensor(torch.zeros(1, 2, 2, 3, dtype=torch.uint8).numpy(), [0.5], [0.5, 0.5, 0.5]), "mean"),
    (lambda: onnx2snn.SpikingNetwork.simulate(None, None, [0, 4]), "timesteps"),
])
def test_errors_name_the_library_parameter(call, parameter):
    with pytest.raises(onnx2snn.ConfigError) as caught:
        call()
    assert caught.value.parameter == parameter
    assert parameter in str(caught.value) and "--" not in str(caught.value)


def test_the_cli_names_its_flag():
    error = onnx2snn.ConfigError("max_memory must be positive, not '0' (max_memory)", parameter="max_memory")
    assert error_line(error) == "--max-memory must be positive, not '0' (max_memory)"
    assert error_line(onnx2snn.ConfigError("reset must be one of subtract, zero", parameter="reset")) == \
        "--reset must be one of subtract, zero"
    assert error_line(onnx2snn.ConfigError("no parameter here")) == "no parameter here"


def test_every_mapped_flag_exists():
    parser = build_parser()
    flags = {option for action in parser._subparsers._group_actions[0].choices.values()  # noqa: SLF001
             for sub in action._actions for option in sub.option_strings}  # noqa: SLF001
    assert set(FLAGS.values()) <= flags
