"""The example scripts: a tiny training run exports an ONNX the converter accepts, resuming works,
and the reset study's summary logic."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import models  # noqa: E402
import reset_study  # noqa: E402
import train  # noqa: E402

from onnx2snn.converter.convert import ConversionOptions, convert_model  # noqa: E402
from onnx2snn.dialect import load_model  # noqa: E402
from tests.helpers import run_onnxruntime  # noqa: E402


@pytest.fixture
def tiny_folder(tmp_path, monkeypatch) -> Path:
    """A CIFAR-style image folder: 10 classes x 3 train and 2 test PNGs of 32x32 noise."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the decode cache out of ~/.cache
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for split, count in (("train", 3), ("test", 2)):
        for label in range(10):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_tiny_training_exports_an_onnx_the_converter_accepts(tiny_folder, tmp_path):
    out = tmp_path / "run"
    summary = train.main(["small_cnn", "--data", str(tiny_folder), "--epochs", "1", "--out", str(out),
                          "--batch-size", "8", "--threads", "1"])
    assert summary["epochs_done"] == 1 and summary["test_images"] == 20
    path = out / "small_cnn.onnx"
    model = load_model(path)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["onnx2snn.input_mean"] == ",".join(f"{v:g}" for v in train.MEAN)
    assert props["onnx2snn.input_std"] == ",".join(f"{v:g}" for v in train.STD)
    assert model.opset_import[0].version == 13
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param, "the batch dimension must be dynamic"

    # The exported graph matches the trained torch model, for a batch size other than the export's.
    net = models.small_cnn()
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    net.load_state_dict(state)
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        expected = net.eval()(x).numpy()
    np.testing.assert_allclose(run_onnxruntime(model, x.numpy()), expected, rtol=1e-4, atol=1e-4)

    conversion = convert_model(model, x, ConversionOptions(threshold="max"))
    if_nodes = [n for n in conversion.model.graph.node if n.op_type == "IF"]
    assert len(if_nodes) == 4  # one per ReLU of the small CNN
    onnx.checker.check_model(conversion.model)


def test_training_resumes_from_its_checkpoint(tiny_folder, tmp_path, capsys):
    out = tmp_path / "run"
    common = ["small_cnn", "--data", str(tiny_folder), "--epochs", "2", "--out", str(out),
              "--batch-size", "16", "--threads", "1", "--no-test"]
    first = train.main(common + ["--chunk", "1"])
    assert first["epochs_done"] == 1
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["epoch"] == 1
    second = train.main(common)
    assert "resuming" in capsys.readouterr().out
    assert second["epochs_done"] == 2
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert json.loads((out / "train.json").read_text())["epochs_done"] == 2
    # A resume with another schedule is refused rather than silently mixing two runs.
    with pytest.raises(SystemExit):
        train.main(common[:4] + ["3"] + common[5:])


def test_one_cycle_schedule_rises_then_falls():
    lrs = [train.one_cycle_lr(step, 100, 1.0) for step in range(101)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(1.0)
    assert lrs.index(max(lrs)) == 25 and lrs[-1] == pytest.approx(0.0, abs=1e-9)


def test_reference_models_build_with_the_documented_shapes():
    x = torch.zeros(2, 3, 32, 32)
    for name, kwargs in (("small_cnn", {}), ("vgg5", {"width": 64}), ("vgg7_maxpool", {}), ("vgg16", {})):
        net = models.build(name, **kwargs).eval()
        assert net(x).shape == (2, 10)
        # the reference models pool by averaging; vgg7_maxpool exists to test max pooling
        assert any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules()) == (name == "vgg7_maxpool")
    vgg5 = models.vgg5()
    assert all(getattr(m, "bias", None) is None for m in vgg5.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert [m.out_features for m in vgg5.modules() if isinstance(m, torch.nn.Linear)] == [4096, 4096, 10]


def test_lowest_t_within_needs_the_accuracy_to_stay_close():
    ann = 0.80
    assert reset_study.lowest_t_within({8: 0.5, 16: 0.795, 32: 0.78, 64: 0.80}, ann) == 64
    assert reset_study.lowest_t_within({8: 0.5, 16: 0.795, 32: 0.792, 64: 0.80}, ann) == 16
    assert reset_study.lowest_t_within({8: 0.5, 16: 0.6}, ann) is None


def test_reset_study_writes_tables_and_plots(tiny_folder, tmp_path):
    train.main(["small_cnn", "--data", str(tiny_folder), "--epochs", "1", "--out", str(tmp_path / "run"),
                "--batch-size", "8", "--threads", "1", "--no-test"])
    report = reset_study.main([str(tmp_path / "run" / "small_cnn.onnx"), "--name", "tiny", "--data",
                               str(tiny_folder), "--out", str(tmp_path / "study"), "--limit", "10", "--calib", "8",
                               "--methods", "max", "--scales", "0.8,1.0", "-T", "2,4"])
    folder = tmp_path / "study" / "tiny"
    for name in ("study.json", "study.md", "accuracy_vs_T_soft.png", "accuracy_vs_T_hard.png",
                 "accuracy_vs_scale.png"):
        assert (folder / name).is_file(), name
    assert len(report["runs"]) == 4  # 2 resets x 1 method x 2 scales
    assert set(report["lowest_T_within_1pct"]) == {"soft", "hard"}
    assert not (folder / "study.json.partial").exists()


def test_demo_finds_the_built_in_model_and_its_normalization():
    from onnx2snn.cli.demo import BUILTIN_MODEL, default_model
    from onnx2snn.errors import DataError

    if not BUILTIN_MODEL.is_file():
        pytest.skip("the built-in model has not been trained into this checkout yet")
    path, mean, std = default_model()
    assert path == BUILTIN_MODEL and len(mean) == 3 and len(std) == 3 and all(s > 0 for s in std)
    with pytest.raises(DataError, match="neither small_cnn"):
        default_model("no_such_model.onnx")
