"""Progress of a layer-by-layer calibration, for whoever shows it (the CLI's bar over the layers).

The calibration methods report each finished layer to the reporter installed with ``reporting``;
without one, nothing is reported (the library itself never prints). A context variable keeps
the reporter out of every function signature between the CLI and the methods.
"""
from __future__ import annotations

import contextlib
import contextvars


class Progress:
    """Receives ``start`` once, then ``advance`` after every layer; the base class ignores both."""

    def start(self, total: int, description: str) -> None:
        pass

    def advance(self, layer: str) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress(Progress):
    """A tqdm bar over the layers (with an ETA) on stderr."""

    def __init__(self):
        self.bar = None

    def start(self, total: int, description: str) -> None:
        from tqdm import tqdm

        self.close()
        self.bar = tqdm(total=total, desc=description, unit="layer", dynamic_ncols=True, leave=True)

    def advance(self, layer: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(layer[-40:], refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


_reporter: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("calibration_progress", default=None)


@contextlib.contextmanager
def reporting(progress: Progress | None):
    """Within the block, calibrations report their layers to ``progress`` (None: to nobody)."""
    token = _reporter.set(progress)
    try:
        yield progress
    finally:
        _reporter.reset(token)
        if progress is not None:
            progress.close()


def current() -> Progress:
    return _reporter.get() or Progress()
