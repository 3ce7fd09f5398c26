"""The README's Python example runs as written, on a tiny model and data set made here."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np

from helpers import small_cnn

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(tmp_path, tiny_images, monkeypatch):
    (tmp_path / "ann.onnx").write_bytes(small_cnn(np.random.default_rng(0)).SerializeToString())
    shutil.copytree(tiny_images, tmp_path / "data" / "cifar10")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(python_example(), str(README), "exec"), namespace)  # noqa: S102
    assert (tmp_path / "snn.onnx").is_file()
    assert set(namespace["result"].snn_accuracy) == {16, 64}
    assert namespace["x"].shape == (40, 3, 8, 8) and namespace["ann_logits"].shape == (40, 10)
    assert 0.0 <= float(namespace["accuracy_at_64"]) <= 1.0


def test_the_example_uses_only_the_top_level_package():
    imports = re.findall(r"^(?:from|import) (\S+)", python_example(), re.M)
    assert imports == ["onnx2snn"]
