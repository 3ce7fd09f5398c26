"""``onnx2snn demo``: convert the default model, then compare ANN and SNN accuracy over T."""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from ..api import ConversionOptions, convert, evaluate, input_normalization
from ..atomic import atomic_write_text
from ..converter.progress import BarProgress, reporting
from ..data import cifar10_dir, shared_dir
from ..devices import resolve_device
from ..dialect import load_model, metadata
from ..errors import ConfigError, DataError, InvalidModelError
from ..report import markdown_table, plot_accuracy
from ..runtime.timesteps import timestep_list

# The built-in default: a small CNN trained by examples/train.py (its input normalization is stored in
# the file's metadata). "resnet20" selects the shared ResNet-20 instead (../shared, when present).
BUILTIN_MODEL = Path(__file__).resolve().parents[1] / "models" / "small_cnn_cifar10.onnx"
RESNET20 = ("models/resnet20_cifar10.onnx", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def stored_normalization(path: Path) -> tuple[list[float], list[float]]:
    try:
        return input_normalization(metadata(load_model(path, check=False)))
    except ConfigError as error:
        raise InvalidModelError(f"{path}: {error}") from error


def default_model(name: str = "small_cnn") -> tuple[Path, tuple, tuple]:
    """``small_cnn`` (built in), ``resnet20`` (shared), or a path to an ANN that stores its normalization."""
    if name == "small_cnn":
        if not BUILTIN_MODEL.is_file():
            raise DataError(f"the built-in model {BUILTIN_MODEL} is missing from this installation")
        return (BUILTIN_MODEL, *stored_normalization(BUILTIN_MODEL))
    if name == "resnet20":
        relative, mean, std = RESNET20
        shared = shared_dir()
        if shared is None or not (shared / relative).is_file():
            raise DataError(f"the shared ResNet-20 ../shared/{relative} was not found")
        return shared / relative, mean, std
    path = Path(name)
    if not path.is_file():
        raise DataError(f"demo model {name!r} is neither small_cnn, resnet20 nor an existing .onnx file")
    return (path, *stored_normalization(path))


def run_demo(limit: int, timesteps, out_dir: Path, device: str = "cpu",
             threshold: str = ConversionOptions.threshold, model: str = "small_cnn", say=print,
             progress: bool = False) -> dict:
    """Convert with ``convert``'s default method (``auto``), soft and hard reset, and evaluate both;
    ``say`` receives every line of text (each step as it starts, and every file written)."""
    started = time.time()
    resolve_device(device)  # an absent accelerator is one clear error before any work
    timesteps = timestep_list(timesteps)
    ann, mean, std = default_model(model)
    data = cifar10_dir()
    say(f"model: {ann}\ndata:  {data} (test split, class-balanced {limit} images; calibration: 256 train images)")
    curves, ann_accuracy, written = {}, None, []
    for reset, label in (("subtract", "soft reset"), ("zero", "hard reset")):
        snn = out_dir / f"snn_{reset}.onnx"
        say(f"[{label}] converting ({threshold}) ...")
        with reporting(BarProgress()) if progress else contextlib.nullcontext():  # the bar over the layers
            convert(ann, snn, data, mean, std, calibration_images=256,
                    options=ConversionOptions(threshold=threshold, reset=reset), device=device)
        say(f"[{label}] wrote {snn}; evaluating T={','.join(map(str, timesteps))} on {limit} images ...")
        written.append(snn)
        result = evaluate(snn, data, timesteps=timesteps, limit=limit, device=device,
                          ann_path=ann if ann_accuracy is None else None, progress=progress)
        ann_accuracy = result.ann_accuracy if ann_accuracy is None else ann_accuracy
        curves[f"SNN {label} ({threshold})"] = result.snn_accuracy
    table = markdown_table(curves, ann_accuracy)
    say(table)
    plot_accuracy(curves, ann_accuracy, out_dir / "accuracy.png", title=f"{ann.name}: ANN vs SNN")
    seconds = time.time() - started
    written += [out_dir / "accuracy.png", out_dir / "demo.json"]
    report = {"model": ann.name, "n": limit, "ann_accuracy": ann_accuracy, "seconds": round(seconds, 1),
              "snn_accuracy": {k: {str(t): a for t, a in v.items()} for k, v in curves.items()},
              "files": [str(path) for path in written]}
    atomic_write_text(out_dir / "demo.json", json.dumps(report, indent=2) + "\n")
    say(f"wrote {', '.join(map(str, written))} ({seconds:.0f} s)")
    return report
