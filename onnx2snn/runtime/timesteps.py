"""The one check of the timesteps a simulation reports at (``-T`` on the command line)."""
from __future__ import annotations

from collections.abc import Iterable

from ..errors import ConfigError


def timestep_list(timesteps: int | str | Iterable[int]) -> list[int]:
    """Sorted distinct positive timesteps from ``32``, ``"16,32,64"`` or ``[16, 32, 64]``."""
    try:
        if isinstance(timesteps, str):
            values = [int(v) for v in timesteps.split(",") if v.strip()]
        elif isinstance(timesteps, int):
            values = [timesteps]
        else:
            values = [int(v) for v in timesteps]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"timesteps must be positive integers, not {timesteps!r}", parameter="timesteps") \
            from error
    if not values or min(values) < 1:
        raise ConfigError(f"timesteps must be positive integers, not {timesteps!r}", parameter="timesteps")
    return sorted(set(values))
