"""One place that turns a ``--device`` string into a torch device, with one clear error."""
from __future__ import annotations

import torch

from .errors import ConfigError


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...: a ``torch.device`` that exists on this machine.

    Asking for an accelerator that torch cannot see is a ``ConfigError`` here, before any work,
    rather than a torch traceback halfway through a conversion.
    """
    text = "cpu" if name is None else str(name)
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, not {text!r}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text} was asked for, but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"--device {text}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"--device {text} was asked for, but torch sees no MPS device")
    elif device.type != "cpu":
        raise ConfigError(f"--device must be cpu, cuda or cuda:N, not {text!r}")
    return device
