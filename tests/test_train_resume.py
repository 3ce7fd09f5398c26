"""The training script's resumable path on the CPU (the path scripts/gpu_train.sh takes on a GPU):
the device-resident data with batched augmentation, a run cut by --max-steps or --time-budget and
resumed mid-epoch, which must end with the same weights as an uninterrupted run. A few seconds."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import train  # noqa: E402

from onnx2snn.converter.convert import ConversionOptions, convert_model  # noqa: E402
from onnx2snn.dialect import load_model  # noqa: E402

from hostile_cases import make_image_folder


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """10 classes x 2 train and 1 test PNGs of 32x32 noise."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return make_image_folder(tmp_path / "data", per_class=2, test_per_class=1, size=32, seed=1)


def common(data: Path, out: Path) -> list[str]:
    # vgg16 at 1/16 width (4..32 channels): the real layer structure, tiny cost; dropout included.
    return ["vgg16", "--data", str(data), "--limit", "20", "--epochs", "1", "--batch-size", "10",
            "--width-mult", "0.0625", "--gpu-resident", "--threads", "1", "--out", str(out), "--no-test",
            "--fp16-onnx"]


def test_cut_and_resumed_run_matches_an_uninterrupted_one(data, tmp_path, capsys):
    straight = train.main(common(data, tmp_path / "straight"))
    assert straight["finished"] and straight["steps_done"] == 2

    cut = tmp_path / "cut"
    stopped = train.main(common(data, cut) + ["--time-budget", "0"])  # stops before the first step
    assert not stopped["finished"] and stopped["steps_done"] == 0
    first = train.main(common(data, cut) + ["--max-steps", "1"])     # stops in the middle of the epoch
    assert not first["finished"] and first["steps_done"] == 1 and first["epochs_done"] == 0
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["step"] == 1
    second = train.main(common(data, cut))
    assert "resuming" in capsys.readouterr().out
    assert second["finished"] and second["steps_done"] == 2 and second["epochs_done"] == 1

    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(cut / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)

    record = json.loads((cut / "train.json").read_text())
    assert record["width_mult"] == 0.0625 and record["setup"]["gpu_resident"]
    model = load_model(cut / "vgg16.onnx")
    assert {p.key: p.value for p in model.metadata_props}["onnx2snn.width_mult"] == "0.0625"
    # fp16 weights (+ Cast): the converter reads them and gives one IF layer per ReLU
    assert any(t.data_type == 10 for t in model.graph.initializer)
    conversion = convert_model(model, torch.rand(4, 3, 32, 32), ConversionOptions(threshold="max"))
    assert sum(n.op_type == "IF" for n in conversion.model.graph.node) == 13


def test_resident_augmentation_matches_the_cpu_path():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    resident = train.ResidentData(images, np.arange(6), torch.device("cpu"))
    order, dy, dx, flip = train.epoch_plan(0, 0, 6)
    pick = torch.from_numpy(order)
    x, y = resident.batch(pick, dy, dx, flip)
    expected = train.augment(images[order], dy, dx, flip)
    # padding: mean colour (uint8) against exact zero after normalization, ~0.01 apart
    torch.testing.assert_close(x, expected, rtol=0, atol=0.02)
    assert y.tolist() == order.tolist()
    # a flip and a crop were really applied: one image checked by hand
    i = int(np.flatnonzero(flip.numpy())[0]) if flip.any() else 0
    manual = torch.nn.functional.pad(train.to_tensor(images[order[i]:order[i] + 1], train.MEAN, train.STD),
                                     (4, 4, 4, 4))[0, :, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
    torch.testing.assert_close(expected[i], manual.flip(-1) if flip[i] else manual)


SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_train.sh"


def run_script(args: list[str], env: dict) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(["bash", str(SCRIPT), *args], env=full, capture_output=True, text=True, timeout=120)


def test_gpu_script_says_so_in_one_line_without_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = run_script([str(tmp_path / "out")], {})
    assert done.returncode == 0 and done.stdout.strip().count("\n") == 0
    assert "no CUDA device" in done.stdout and not (tmp_path / "out").exists()


@pytest.mark.slow  # four Python start-ups with torch: ~15 s idle, minutes on a loaded machine
def test_gpu_script_path_runs_on_the_cpu_and_checks_its_onnx(data, tmp_path):
    env = {"DEVICE": "cpu", "DATA": str(data), "EPOCHS_vgg16": "1", "WIDTH_MULT": "0.0625",
           "CKPT_DIR": str(tmp_path / "ckpt"), "EXTRA": "--limit 20 --batch-size 10 --threads 1"}
    done = run_script([str(tmp_path / "out"), "vgg16"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads((tmp_path / "out" / "vgg16" / "train.json").read_text())
    assert record["finished"] and record["width_mult"] == 0.0625 and record["onnx_check"]["images"] == 10
    assert "test_accuracy_torch" in record and (tmp_path / "ckpt" / "vgg16" / "checkpoint.pt").is_file()
    again = run_script([str(tmp_path / "out"), "vgg16"], env)
    assert again.returncode == 0 and "finished earlier" in again.stdout


def test_compact_checkpoint_is_float16_and_resumes(data, tmp_path):
    out = tmp_path / "compact"
    args = common(data, out) + ["--compact-checkpoint"]
    train.main(args + ["--max-steps", "1"])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    floats = [v for v in state["model"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    momentum = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
    assert momentum and all(m.dtype == torch.float16 for m in momentum)
    resumed = train.main(args)
    assert resumed["finished"] and resumed["steps_done"] == 2
