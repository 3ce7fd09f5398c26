"""examples/reset_study.py on a tiny model: the issue-17 sweep (soft/hard reset x spikenorm,
percentile:99.9, auto x threshold scale x T) done in two pieces, the soft-vs-hard plot, and the
one table of lowest T across networks. A few seconds."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import models  # noqa: E402
import reset_study  # noqa: E402
import train  # noqa: E402

from hostile_cases import make_image_folder


@pytest.fixture
def data(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data", per_class=2, size=32, seed=2)


def test_sweep_in_pieces_then_table_and_plots(data, tmp_path, capsys):
    torch.manual_seed(0)
    path = tmp_path / "tiny.onnx"
    train.export_onnx(models.vgg5(width_mult=1 / 16), path, {"onnx2snn.width_mult": "0.0625"})
    argv = [str(path), "--name", "tiny", "--data", str(data), "--out", str(tmp_path / "study"), "--limit", "20",
            "--calib", "8", "-T", "8,16", "--scales", "0.8,1.0", "--scale-methods", "percentile:99.9",
            "--batch-size", "20"]
    assert reset_study.main(argv + ["--max-configs", "3"]) == {"stopped": True}
    folder = tmp_path / "study" / "tiny"
    partial = json.loads((folder / "study.json.partial").read_text())
    assert len(partial["runs"]) == 3 and not (folder / "study.json").exists()

    report = reset_study.main(argv)
    assert "resuming" in capsys.readouterr().out
    # 2 resets x (spikenorm, auto at scale 1 + percentile at 0.8 and 1.0)
    assert len(report["runs"]) == 8 and not (folder / "study.json.partial").exists()
    assert {r["method"] for r in report["runs"].values()} == {"spikenorm", "percentile:99.9", "auto"}
    assert report["label"] == "tiny (width x0.0625)" and report["n"] == 20
    for name in ("study.json", "study.md", "soft_vs_hard.png", "accuracy_vs_T_soft.png", "accuracy_vs_scale.png"):
        assert (folder / name).is_file(), name
    assert set(report["lowest_T_per_method"]["auto"]) == {"soft", "hard"}

    table_path = tmp_path / "lowest_T.md"
    reset_study.main(["--combine", str(folder / "study.json"), str(folder / "study.json"), "--table", str(table_path)])
    rows = [line for line in table_path.read_text().splitlines() if line.startswith("| tiny")]
    assert len(rows) == 2 * 3  # two networks (the same one twice) x three methods


def test_lowest_t_table_cells():
    report = {"name": "net", "label": "net", "ann_accuracy": 0.9, "n": 1000, "timesteps": [8, 16, 32],
              "lowest_T_per_method": {"auto": {"soft": {"scale_1": 16, "best": 8, "best_scale": 0.8},
                                               "hard": {"scale_1": None, "best": None, "best_scale": None}}}}
    table = reset_study.lowest_t_table([report])
    assert "| net | 90.00% (1000 images) | auto | 16 (8 at scale 0.8) | > 32 |" in table
