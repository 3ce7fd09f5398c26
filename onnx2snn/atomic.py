"""Atomic file output: write to a temporary file beside the target, then rename it into place.

A kill at any moment leaves either the old file or the new one, never a partial file.

A SIGKILL during the write can leave the temporary file ``.<name>.<pid>.<random>.tmp`` behind
(no code runs after SIGKILL). Such files are never read; the next write of the same target
deletes those whose writing process no longer exists, so they do not pile up, while a
concurrent writer's live temporary file is left alone.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# mkstemp creates 0600 files; the renamed output should get the usual permissions instead.
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_prefix(target: Path) -> str:
    return f".{target.name}."


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or unknowable: keep its file
    return True


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temporary files of ``path`` left by writers that no longer run."""
    target = Path(path)
    pattern = re.compile(re.escape(_temp_prefix(target)) + r"(\d+)\.[^.]+\.tmp")
    stale = []
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
                stale.append(entry)
    return stale


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system allows it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in stale_temp_files(target):
        with contextlib.suppress(OSError):
            stale.unlink()
    fd, tmp_name = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{os.getpid()}.", suffix=".tmp",
                                    dir=target.parent)
    try:
        with contextlib.suppress(OSError, AttributeError):  # no fchmod on Windows
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
        _fsync_dir(target.parent)  # make the rename itself survive a power cut
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)
