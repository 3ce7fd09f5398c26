"""``onnx2snn demo``: convert the default model, then compare ANN and SNN accuracy over T."""
from __future__ import annotations

import json
import time
from pathlib import Path

from .._atomic import atomic_write_text
from ..converter.convert import ConversionOptions, convert
from ..data import parse_floats
from ..errors import DataError, InvalidModelError
from ..evaluate import evaluate
from ..onnx_io import load_model
from ..report import markdown_table, plot_accuracy
from .shared_assets import cifar10_dir, shared_dir

# The built-in default: a small CNN trained by examples/train.py (its input normalization is stored in
# the file's metadata). "resnet20" selects the shared ResNet-20 instead (../shared, when present).
BUILTIN_MODEL = Path(__file__).resolve().parents[1] / "models" / "small_cnn_cifar10.onnx"
RESNET20 = ("models/resnet20_cifar10.onnx", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def stored_normalization(path: Path) -> tuple[list[float], list[float]]:
    props = {p.key: p.value for p in load_model(path, check=False).metadata_props}
    mean = parse_floats(props.get("onnx2snn.input_mean", ""), f"{path.name}: stored mean")
    std = parse_floats(props.get("onnx2snn.input_std", ""), f"{path.name}: stored std")
    if not mean or not std:
        raise InvalidModelError(f"{path}: stores no onnx2snn.input_mean/onnx2snn.input_std metadata")
    return mean, std


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


def calibration_bar():
    """The calibration's bar over the layers when stderr is a terminal (as ``convert`` shows it)."""
    import contextlib
    import sys

    from ..converter.progress import BarProgress, reporting

    return reporting(BarProgress()) if sys.stderr.isatty() else contextlib.nullcontext()


def run_demo(limit: int, timesteps: list[int], out_dir: Path, device: str = "cpu",
             threshold: str = ConversionOptions.threshold, model: str = "small_cnn") -> dict:
    """Convert with ``convert``'s default method (``auto``), soft and hard reset, and evaluate both."""
    started = time.time()
    ann, mean, std = default_model(model)
    data = cifar10_dir()
    print(f"model: {ann}\ndata:  {data} (test split, class-balanced {limit} images; calibration: 256 train images)")
    curves, ann_accuracy = {}, None
    for reset, label in (("subtract", "soft reset"), ("zero", "hard reset")):
        snn = out_dir / f"snn_{reset}.onnx"
        with calibration_bar():
            convert(ann, snn, data, mean, std, calibration_images=256,
                    options=ConversionOptions(threshold=threshold, reset=reset), device=device)
        result = evaluate(snn, data, timesteps=timesteps, limit=limit, device=device,
                          ann_path=ann if ann_accuracy is None else None)
        ann_accuracy = result.ann_accuracy if ann_accuracy is None else ann_accuracy
        curves[f"SNN {label} ({threshold})"] = result.snn_accuracy
    table = markdown_table(curves, ann_accuracy)
    print(table)
    plot_accuracy(curves, ann_accuracy, out_dir / "accuracy.png", title=f"{ann.name}: ANN vs SNN")
    seconds = time.time() - started
    report = {"model": ann.name, "n": limit, "ann_accuracy": ann_accuracy, "seconds": round(seconds, 1),
              "snn_accuracy": {k: {str(t): a for t, a in v.items()} for k, v in curves.items()}}
    atomic_write_text(out_dir / "demo.json", json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir / 'accuracy.png'} and {out_dir / 'demo.json'} ({seconds:.0f} s)")
    return report
