"""Tables and plots of accuracy against timesteps (written atomically)."""
from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

from .atomic import atomic_write_bytes, atomic_write_text


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


# -- evaluate --plot -----------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_by_reset(runs, path: str | os.PathLike) -> dict:
    """Accuracy against T, one panel per reset mode (soft and hard side by side when both are given).
    Returns the data behind the axes."""
    plt = _pyplot()
    panels: dict[str, dict] = {}
    for label, result in runs:
        reset = {"subtract": "soft reset", "zero": "hard reset"}.get(result.settings.get("reset"), "reset unknown")
        panel = panels.setdefault(reset, {"curves": {}, "ann": None})
        panel["curves"][label] = {str(t): a for t, a in sorted(result.snn_accuracy.items())}
        panel["ann"] = panel["ann"] if result.ann_accuracy is None else result.ann_accuracy
    order = sorted(panels, key=lambda r: ("soft" not in r, r))
    figure, axes = plt.subplots(1, len(order), figsize=(6.0 * len(order), 4.2), dpi=110, sharey=True, squeeze=False)
    for ax, reset in zip(axes[0], order):
        panel = panels[reset]
        for label, curve in panel["curves"].items():
            steps = [int(t) for t in curve]
            ax.plot(steps, [100 * curve[str(t)] for t in steps], marker="o", label=label)
        if panel["ann"] is not None:
            ax.axhline(100 * panel["ann"], color="black", linestyle="--", label=f"ANN {100 * panel['ann']:.2f}%")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("timesteps T")
        ax.set_title(reset)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("accuracy (%)")
    figure.suptitle("SNN accuracy against timesteps")
    figure.tight_layout()
    save_figure(figure, path)
    return {reset: panels[reset] for reset in order}


def plot_firing_rates(runs, path: str | os.PathLike) -> dict:
    """Mean firing rate per neuron layer (left) and the histogram of per-neuron rates (right)."""
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    data = {}
    for label, result in runs:
        stats = result.statistics
        rates = [layer.rate for layer in stats.layers]
        left.plot(range(len(rates)), rates, marker="o", label=label)
        total = [sum(layer.histogram[i] for layer in stats.layers) for i in range(len(stats.bin_edges) - 1)]
        centers = [(a + b) / 2 for a, b in zip(stats.bin_edges, stats.bin_edges[1:])]
        neurons = max(1, sum(total))
        right.plot(centers, [100 * v / neurons for v in total], marker=".", label=label)
        data[label] = {"layers": [layer.name for layer in stats.layers], "rates": rates,
                       "bin_edges": stats.bin_edges, "histogram": total}
    names = next(iter(data.values()))["layers"] if data else []
    left.set_xticks(range(len(names)))
    left.set_xticklabels([_short(n) for n in names], rotation=70, fontsize=7)
    left.set_ylabel("spikes per neuron per step")
    left.set_title("mean firing rate per layer")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    right.set_xlabel("firing rate (spikes per step)")
    right.set_ylabel("neurons (%)")
    right.set_yscale("log")
    right.set_title("firing rates of all neurons")
    right.grid(True, alpha=0.3)
    figure.tight_layout()
    save_figure(figure, path)
    return data


def plot_accuracy_vs_sops(runs, path: str | os.PathLike) -> dict:
    """Accuracy against synaptic operations per image, one point per T."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    data = {}
    for label, result in runs:
        stats = result.statistics
        points = [(t, stats.sops_by_t[t], result.snn_accuracy[t]) for t in sorted(result.snn_accuracy)
                  if t in stats.sops_by_t]
        axes.plot([p[1] for p in points], [100 * p[2] for p in points], marker="o", label=label)
        for t, sops, accuracy in points:
            axes.annotate(f"T={t}", (sops, 100 * accuracy), fontsize=7, textcoords="offset points", xytext=(4, -10))
        data[label] = {"T": [p[0] for p in points], "sops": [p[1] for p in points],
                       "accuracy": [p[2] for p in points], "ann_macs": stats.ann_macs}
        ann_macs = stats.ann_macs
    if data:
        axes.axvline(ann_macs, color="gray", linestyle=":", label=f"ANN MACs ({ann_macs / 1e6:.1f}M)")
    axes.set_xscale("log")
    axes.set_xlabel("synaptic operations per image")
    axes.set_ylabel("accuracy (%)")
    axes.set_title("accuracy against synaptic operations")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7)
    figure.tight_layout()
    save_figure(figure, path)
    return data


def plot_traces(runs, path: str | os.PathLike) -> dict:
    """Membrane potential of the chosen neurons over time, spikes marked, threshold dashed."""
    plt = _pyplot()
    series = [(label, layer, neuron, trace) for label, result in runs
              for layer, neurons in result.statistics.traces.items() for neuron, trace in neurons.items()]
    figure, axes = plt.subplots(len(series), 1, figsize=(7.5, 1.9 * len(series) + 0.6), dpi=110, sharex=True,
                                squeeze=False)
    data = {}
    for ax, (label, layer, neuron, trace) in zip(axes[:, 0], series):
        steps = list(range(1, len(trace["v"]) + 1))
        ax.plot(steps, trace["v"], drawstyle="steps-post", linewidth=1)
        fired = [t for t, k in zip(steps, trace["spikes"]) if k]
        ax.plot(fired, [trace["threshold"]] * len(fired), "|", color="red", markersize=10, label="spike")
        ax.axhline(trace["threshold"], color="gray", linestyle="--", linewidth=0.8, label="threshold")
        ax.set_title(f"{_short(layer)} neuron {neuron} ({sum(trace['spikes']):.0f} spikes) — {label}", fontsize=8)
        ax.set_ylabel("v")
        ax.grid(True, alpha=0.3)
        data.setdefault(label, {}).setdefault(layer, {})[str(neuron)] = trace
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("timestep (potential after the step's reset)")
    figure.tight_layout()
    save_figure(figure, path)
    return data


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def evaluation_plots(runs, out_dir: str | os.PathLike) -> list:
    """The plots of ``evaluate --plot`` and ``plots.json`` with the data behind every axis.
    Returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, data = [], {}
    data["accuracy"] = plot_accuracy_by_reset(runs, out_dir / "accuracy.png")
    written.append(out_dir / "accuracy.png")
    if all(result.statistics is not None for _, result in runs):
        data["firing_rates"] = plot_firing_rates(runs, out_dir / "firing_rates.png")
        data["accuracy_vs_sops"] = plot_accuracy_vs_sops(runs, out_dir / "accuracy_vs_sops.png")
        written += [out_dir / "firing_rates.png", out_dir / "accuracy_vs_sops.png"]
        if any(result.statistics.traces for _, result in runs):
            data["traces"] = plot_traces(runs, out_dir / "traces.png")
            written.append(out_dir / "traces.png")
    atomic_write_text(out_dir / "plots.json", json.dumps(data, indent=2) + "\n")
    written.append(out_dir / "plots.json")
    return written
