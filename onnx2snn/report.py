"""Tables and plots of accuracy against timesteps (written atomically)."""
from __future__ import annotations

import io
import os
from collections.abc import Mapping

from .atomic import atomic_write_bytes


def markdown_table(curves: Mapping[str, Mapping[int, float]], ann: float | None) -> str:
    """One row per configuration, one column per T; accuracies in percent."""
    steps = sorted({t for curve in curves.values() for t in curve})
    lines = ["| configuration | " + " | ".join(f"T={t}" for t in steps) + " |",
             "|---|" + "---:|" * len(steps)]
    if ann is not None:
        lines.append("| ANN | " + " | ".join(f"{100 * ann:.2f}" for _ in steps) + " |")
    for label, curve in curves.items():
        cells = [f"{100 * curve[t]:.2f}" if t in curve else "" for t in steps]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_accuracy(curves: Mapping[str, Mapping[int, float]], ann: float | None, path: str | os.PathLike,
                  title: str = "SNN accuracy against timesteps") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, curve in curves.items():
        steps = sorted(curve)
        axes.plot(steps, [100 * curve[t] for t in steps], marker="o", label=label)
    if ann is not None:
        axes.axhline(100 * ann, color="black", linestyle="--", label=f"ANN {100 * ann:.2f}%")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("timesteps T")
    axes.set_ylabel("accuracy (%)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path)


def save_figure(figure, path: str | os.PathLike) -> None:
    """Write a matplotlib figure as PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
