"""Logging helpers shared by the library and the CLI."""
from __future__ import annotations

import contextlib
import logging


@contextlib.contextmanager
def logger_level(name: str, level: int):
    """Within the block, the named logger passes only records at ``level`` or above; its own level
    is restored after."""
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)
