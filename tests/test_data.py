"""Data sets from untrusted files: pickles never run code, broken data gets a clear DataError."""
from __future__ import annotations

import builtins
import os
import pickle
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnx2snn.data import load_split
from onnx2snn.data.pickle_safe import load_batch
from onnx2snn.errors import DataError

from hostile_cases import make_image_folder, single_thread  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parent.parent


def write_batch(path: Path, data, labels, key: bytes = b"labels") -> None:
    """A CIFAR-10 python batch as the real files are: protocol 2, bytes keys, numpy arrays."""
    with open(path, "wb") as handle:
        pickle.dump({b"batch_label": b"test", key: labels, b"data": data, b"filenames": []}, handle, protocol=2)


def python_batches(root: Path, n: int = 20, labels=None, data=None) -> Path:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8) if data is None else data
    labels = [i % 10 for i in range(n)] if labels is None else labels
    root.mkdir(parents=True, exist_ok=True)
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        write_batch(root / name, data, labels)
    return root


class _RunsShell:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _RunsEval:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return builtins.eval, (f"open({str(self.marker)!r}, 'w').close()",)


class _RunsSubprocess:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


def test_real_format_batches_load(tmp_path):
    images = load_split(python_batches(tmp_path / "cifar"), "test")
    assert images.images.shape == (20, 32, 32, 3) and images.images.dtype == np.uint8
    assert list(images.labels) == [i % 10 for i in range(20)]


@pytest.mark.parametrize("attack", [_RunsShell, _RunsEval, _RunsSubprocess])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, attack, where):
    marker = tmp_path / "pwned"
    payload = attack(marker)
    content = payload if where == "top" else {b"data": np.zeros((1, 3072), np.uint8), b"labels": [payload]}
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(DataError, match="refusing to load global"):
        load_batch(path)
    with pytest.raises(DataError):
        load_split(tmp_path, "test")
    assert not marker.exists()


class Sneaky(np.ndarray):
    pass


def test_numpy_reconstruct_with_a_foreign_subtype_is_refused(tmp_path):
    """_reconstruct is allowed, but only with ndarray itself: a subtype must also be a permitted global."""
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8).view(Sneaky), b"labels": [0]},
                                  protocol=2))
    with pytest.raises(DataError, match="refusing"):
        load_batch(path)


@pytest.mark.parametrize("content, match", [
    (b"", "not a valid CIFAR python batch"),
    (b"\x80\x02}q\x00(U\x04data", "not a valid CIFAR python batch"),  # truncated
    (pickle.dumps([1, 2, 3], protocol=2), "holds a list"),
    (b"not a pickle at all", "not a valid CIFAR python batch"),
])
def test_broken_pickles(tmp_path, content, match):
    path = tmp_path / "test_batch"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_batch(path)


@pytest.mark.parametrize("labels, data, match", [
    ([10] * 20, None, r"labels must lie in \[0, 9\]"),
    ([-1] + [0] * 19, None, r"labels must lie in \[0, 9\]"),
    (["cat"] * 20, None, "must be a list of integers"),
    ([0.5] * 20, None, "must be a list of integers"),
    ([0] * 19, None, "20 images but 19 labels"),
    ([], np.zeros((0, 3072), np.uint8), "holds no images"),
    (None, np.zeros((20, 3072), np.float32), "uint8 pixels"),
    (None, np.zeros((20, 1024), np.uint8), r"\[N, 3072\]"),
    (None, np.array([[object()] * 3072] * 20, dtype=object), "refusing to load global"),
    (None, np.ones((20, 3072), dtype=object), "uint8 pixels"),
])
def test_inconsistent_batches(tmp_path, labels, data, match):
    root = python_batches(tmp_path / "cifar", labels=labels, data=data)
    with pytest.raises(DataError, match=match):
        load_split(root, "test")


def test_missing_train_batch(tmp_path):
    root = python_batches(tmp_path / "cifar")
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="needs data_batch_3"):
        load_split(root, "train")


def test_image_folder_loads(tmp_path):
    images = load_split(make_image_folder(tmp_path, classes=3, per_class=2), "train")
    assert images.images.shape == (6, 8, 8, 3) and sorted(images.labels) == [0, 0, 1, 1, 2, 2]


def test_mixed_image_sizes(tmp_path):
    root = make_image_folder(tmp_path, classes=2, per_class=2)
    Image.fromarray(np.zeros((9, 8, 3), np.uint8)).save(root / "test" / "class_1" / "odd.png")
    with pytest.raises(DataError, match="differ in size"):
        load_split(root, "test")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "flip"])
def test_corrupt_image(tmp_path, damage):
    root = make_image_folder(tmp_path, classes=2, per_class=2)
    victim = root / "test" / "class_0" / "img_1.png"
    raw = victim.read_bytes()
    broken = {"truncate": raw[: len(raw) // 2], "garbage": b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "empty": b"",
              "flip": raw[:40] + bytes(b ^ 0xFF for b in raw[40:80]) + raw[80:]}[damage]
    victim.write_bytes(broken)
    with pytest.raises(DataError, match="img_1.png"):
        load_split(root, "test")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    root = make_image_folder(tmp_path, classes=1, per_class=1)
    Image.new("L", (5000, 5000)).save(root / "test" / "class_0" / "bomb.png")  # ~25 KB on disk
    with pytest.raises(DataError, match="too large"):
        load_split(root, "test")


@pytest.mark.parametrize("layout", ["no class folders", "empty class folders", "no split", "not a folder"])
def test_empty_splits(tmp_path, layout):
    root = tmp_path / "data"
    if layout == "no class folders":
        (root / "test").mkdir(parents=True)
    elif layout == "empty class folders":
        (root / "test" / "cat").mkdir(parents=True)
        (root / "test" / "dog").mkdir(parents=True)
        (root / "test" / "dog" / "notes.txt").write_text("no images here")
    elif layout == "no split":
        (root / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError):
        load_split(root, "test")


def test_no_unsafe_deserialization_in_the_package():
    """Every torch.load passes weights_only=True, and no module calls pickle.load/loads directly."""
    offenders = []
    for path in list((ROOT / "onnx2snn").rglob("*.py")) + list((ROOT / "scripts").rglob("*.py")) + \
            list((ROOT / "benchmarks").rglob("*.py")) + list((ROOT / "examples").rglob("*.py")):
        text = path.read_text()
        for line_number, line in enumerate(text.splitlines(), 1):
            code = line.split("#")[0]
            if "torch.load(" in code and "weights_only=True" not in code:
                offenders.append(f"{path}:{line_number}: {line.strip()}")
            if ("pickle.load(" in code or "pickle.loads(" in code) and "pickle_safe" not in path.name:
                offenders.append(f"{path}:{line_number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


class _HugeBytes:
    def __reduce__(self):
        return bytes, (10**12,)


def test_bytes_with_a_size_is_refused(tmp_path):
    """``bytes()`` is allowed only without arguments: ``bytes(10**12)`` would allocate a terabyte."""
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({b"data": _HugeBytes(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="refusing bytes"):
        load_batch(path)
