"""Print the markdown table of hostile inputs and the error line each gets (for docs/robustness.md).

Runs every case of tests/hostile_cases.py through ``onnx2snn convert`` in-process.
Usage: python scripts/robustness_table.py > table.md
"""
from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402

from onnx2snn.cli.main import main  # noqa: E402

from hostile_cases import CASES, MEAN, STD, make_image_folder  # noqa: E402


def run_case(case, folder: Path, data: Path) -> tuple[int, str]:
    models = folder / "models"
    models.mkdir()
    model = case.build(models)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        status = main(["convert", str(model), "-o", str(folder / "out.onnx"), "--data", str(data), "--mean", MEAN,
                       "--std", STD, "--calib", "10", "--threshold", "max", *case.extra])
    line = stderr.getvalue().strip()
    # paths differ per run; show them relative to the case folder
    return status, line.replace(str(models) + "/", "").replace(str(models.parent) + "/", "")


def main_table() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        data = make_image_folder(Path(tmp) / "data")
        print("| case | extra options | exit | error line |")
        print("|---|---|---:|---|")
        for index, case in enumerate(CASES):
            folder = Path(tmp) / f"case{index}"
            folder.mkdir()
            status, line = run_case(case, folder, data)
            cell = line.replace("|", "\\|").replace("\n", " ⏎ ")
            print(f"| {case.name} | {' '.join(case.extra)} | {status} | `{cell}` |")


if __name__ == "__main__":
    main_table()
