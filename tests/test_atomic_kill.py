"""A kill at any moment leaves the old output or the complete new one, never a partial file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnx2snn.atomic import atomic_write_bytes, stale_temp_files

from hostile_cases import MEAN, STD, cnn, make_image_folder, single_thread  # noqa: F401 (autouse fixture)

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def leftovers(folder: Path, name: str) -> list[str]:
    """Files beside the output other than the output itself."""
    return sorted(p.name for p in folder.iterdir() if p.name != name)


def test_kill_during_the_write_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    """Deterministic: the child kills itself with SIGKILL halfway through writing its bytes."""
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old complete file")
    child = (
        "import os, signal, sys\n"
        "from onnx2snn.atomic import atomic_open\n"
        "with atomic_open(sys.argv[1]) as handle:\n"
        "    handle.write(b'new half'); handle.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "    handle.write(b' and the rest')\n")
    result = subprocess.run([sys.executable, "-c", child, str(target)], env=ENV, timeout=60)
    assert result.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"old complete file"
    temps = [p for p in tmp_path.iterdir() if p != target]
    assert len(temps) == 1 and temps[0].name.startswith(".model.onnx.") and temps[0].name.endswith(".tmp")
    assert stale_temp_files(target) == temps  # its writer is dead
    atomic_write_bytes(target, b"new complete file")
    assert target.read_bytes() == b"new complete file"
    assert leftovers(tmp_path, "model.onnx") == []


def test_a_live_writers_temp_file_is_not_touched(tmp_path):
    target = tmp_path / "out.json"
    live = tmp_path / f".out.json.{os.getpid()}.abc123.tmp"  # this (live) process's own name pattern
    live.write_bytes(b"in progress")
    atomic_write_bytes(target, b"{}")
    assert live.exists() and target.read_bytes() == b"{}"


def test_an_exception_during_the_write_removes_the_temp_file(tmp_path):
    target = tmp_path / "out.onnx"
    with pytest.raises(RuntimeError):
        from onnx2snn.atomic import atomic_open
        with atomic_open(target) as handle:
            handle.write(b"partial")
            raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def _kill_when(process: subprocess.Popen, work: Path, delay: float | None) -> None:
    """SIGKILL after ``delay`` seconds, or (``None``) the moment a temp file of the output appears."""
    deadline = time.monotonic() + 120
    if delay is not None:
        time.sleep(delay)
    else:
        while process.poll() is None and time.monotonic() < deadline:
            if any(p.name.endswith(".tmp") for p in work.iterdir()):
                break
            time.sleep(0.0005)
    process.send_signal(signal.SIGKILL)  # no effect if it already finished
    process.wait(timeout=60)


def test_sigkill_convert_at_random_moments(tmp_path):
    """``onnx2snn convert`` killed with SIGKILL after a seeded random delay (with an older output
    in place), and again the moment its temporary output file appears (with none)."""
    data = make_image_folder(tmp_path / "data")
    model = tmp_path / "ann.onnx"
    model.write_bytes(cnn().SerializeToString())
    work = tmp_path / "out"
    work.mkdir()
    output = work / "snn.onnx"
    command = [sys.executable, "-m", "onnx2snn", "convert", str(model), "-o", str(output), "--data", str(data),
               "--mean", MEAN, "--std", STD, "--calib", "30", "--threshold", "max"]
    # The complete result of the same command, not killed (conversion is deterministic, see test_determinism).
    subprocess.run(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    new_bytes = output.read_bytes()
    old_bytes = b"an older complete output"
    delay = float(np.random.default_rng(6).uniform(0.3, 3.0))
    outcomes = []
    for old_output, when in ((True, delay), (False, None)):
        if old_output:
            output.write_bytes(old_bytes)
        else:
            output.unlink(missing_ok=True)
        process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_when(process, work, when)
        if not output.exists():
            assert not old_output, "the old output vanished"
            outcomes.append("nothing")
        else:
            content = output.read_bytes()
            assert content in (old_bytes, new_bytes), "a partial or different file was left"
            if content == new_bytes:
                onnx.checker.check_model(onnx.load_from_string(content))
            outcomes.append("old" if content == old_bytes else "complete")
        stray = leftovers(work, "snn.onnx")
        assert all(name.startswith(".snn.onnx.") and name.endswith(".tmp") for name in stray), stray
    # whatever a killed writer left behind, the next write of the same target removes it
    atomic_write_bytes(output, new_bytes)
    assert leftovers(work, "snn.onnx") == []
    print("outcomes:", outcomes)
