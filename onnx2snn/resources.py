"""Memory budget for calibration and evaluation, checked before anything large is allocated.

The activation memory of one image comes from ONNX shape inference on the graph (each neuron
counted as the ReLU it replaces), so an absurd graph is refused before torch allocates a byte.
A trial run on one image then measures what the runtime really holds per image (and proves
that the graph runs at all). From both, and from what the method keeps for the whole data set
(SpikeNorm's stored spike trains, percentile samples, the input tensor), the batch size is
lowered to fit ``max_memory``; when not even one image fits, a ``ResourceError`` says why.
The figures are estimates with a safety margin, not a guarantee from the allocator.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import re

import onnx
import torch

from .errors import ConfigError, InvalidModelError, ResourceError

log = logging.getLogger("onnx2snn")

DEFAULT_MAX_MEMORY = 4 * 1024**3
_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2, "MIB": 1024**2,
          "G": 1024**3, "GB": 1024**3, "GIB": 1024**3, "T": 1024**4, "TB": 1024**4, "TIB": 1024**4}
SNN_DOMAIN = "onnx2snn"
SPIKENORM_TIME_CHUNK = 16  # spikenorm.TIME_CHUNK: timesteps of one chunk are held at once
# Layer-wise calibration works in units of about 2M current elements (layerwise.WORK_ELEMENTS) and scores
# candidates in buffers of 8M elements (candidates.BUFFER_ELEMENTS), with the held-out images' sampled
# currents cached: a working set of a few hundred MB, whatever the number of images.
CALIBRATION_WORKING_SET = 384 * 1024**2
PERCENTILE_SAMPLES = 1 << 23  # thresholds.MAX_PERCENTILE_SAMPLES: float32 samples kept per layer


def parse_size(text: str | int | None) -> int:
    """``"4GB"``, ``"512MiB"``, ``"1.5G"`` or a number of bytes; binary units (1 GB = 2**30 bytes)."""
    if text is None:
        return DEFAULT_MAX_MEMORY
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = match.group(2).upper() if match else None
        if not match or unit not in _UNITS:
            raise ConfigError(f"--max-memory must be a size such as 4GB or 512MB, not {text!r}")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value <= 0:
        raise ConfigError(f"--max-memory must be positive, not {text!r}")
    return value


def format_bytes(size: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} PiB"  # pragma: no cover


@dataclasses.dataclass
class ActivationSizes:
    """Bytes that the runtime computes for ONE image."""

    per_image: int  # every tensor of one analog pass
    largest: int  # the largest single tensor
    neurons: list[int]  # elements of each neuron layer's output
    logits: int | None = None  # classes the model outputs (from the trial run)


def _declared_dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_input_shape(model: onnx.ModelProto, image_shape: tuple[int, ...]) -> None:
    """The data's images ``[C, H, W]`` must match the model's declared input (where it declares one)."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1 or not inputs[0].type.tensor_type.HasField("shape"):
        return
    declared = _declared_dims(inputs[0])
    expected = ["N"] + [d if d is not None else "?" for d in declared[1:]]
    if len(declared) != len(image_shape) + 1 or any(
            d is not None and d != s for d, s in zip(declared[1:], image_shape)):
        raise ConfigError(f"the model expects input {expected}, but the data's images are "
                          f"{list(image_shape)} (channels, height, width)")


def _as_relu_graph(model: onnx.ModelProto, image_shape: tuple[int, ...]) -> onnx.ModelProto:
    """A copy that standard shape inference understands: neurons become ReLUs, batch is 1."""
    probe = copy.deepcopy(model)
    graph = probe.graph
    for node in graph.node:
        if node.domain == SNN_DOMAIN:
            del node.input[1:]
            del node.output[1:]
            del node.attribute[:]
            node.op_type, node.domain = "Relu", ""
    initializers = {init.name for init in graph.initializer}
    for value in graph.input:
        if value.name not in initializers:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in (1, *image_shape):
                shape.dim.add().dim_value = size
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    return probe


def estimate_sizes(model: onnx.ModelProto, image_shape: tuple[int, ...]) -> ActivationSizes:
    """Shape-inference estimate (float32 everywhere); tensors of unknown shape count as 0."""
    try:
        inferred = onnx.shape_inference.infer_shapes(_as_relu_graph(model, image_shape), data_prop=True)
    except Exception:  # inconsistent shapes: the trial run reports them with a clearer message
        return ActivationSizes(0, 0, [])
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = _declared_dims(value)
        if value.type.tensor_type.HasField("shape") and all(d is not None and d > 0 for d in dims):
            shapes[value.name] = math.prod(dims)
    sizes = [shapes.get(out, 0) * 4 for node in model.graph.node for out in node.output]
    sizes.append(math.prod(image_shape) * 4)
    neurons = [shapes.get(node.output[0], 0) for node in model.graph.node if node.domain == SNN_DOMAIN]
    return ActivationSizes(sum(sizes), max(sizes), neurons)


def trial_run(network, sample: torch.Tensor) -> ActivationSizes:
    """Run the analog graph on one image: proves it runs, returns 2-D logits, and measures it."""
    env = network.constant_env()
    constants = set(env)
    env[network.input_name] = sample
    try:
        with torch.inference_mode():
            network.run_nodes(env, network.static_nodes + network.dynamic_nodes)
    except (RuntimeError, ValueError, IndexError) as error:  # torch's shape errors ("dimension out of range")
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InvalidModelError(f"the graph fails on one input image [1, {', '.join(map(str, sample.shape[1:]))}] "
                                f"({type(error).__name__}: {first})") from None
    out = env[network.output_name]
    if out.ndim != 2 or out.shape[0] != 1:
        raise InvalidModelError(f"the output {network.output_name!r} has shape {list(out.shape)} for one image; "
                                "a classifier must output 2-D logits [batch, classes]")
    tensors = [v for k, v in env.items() if k not in constants and isinstance(v, torch.Tensor)]
    nbytes = [t.numel() * t.element_size() for t in tensors]
    neurons = [env[network.node_outputs[i][0]].numel() for i in network.neuron_nodes]
    return ActivationSizes(sum(nbytes), max(nbytes, default=0), neurons, int(out.shape[1]))


def measure(model: onnx.ModelProto, network, sample: torch.Tensor, max_memory: int) -> ActivationSizes:
    """Estimate first (refusing before any allocation), then measure with a one-image trial run."""
    estimate = estimate_sizes(model, tuple(sample.shape[1:]))
    if estimate.per_image > max_memory:
        raise ResourceError(f"one image needs about {format_bytes(estimate.per_image)} of activations, over "
                            f"the memory budget of {format_bytes(max_memory)} (--max-memory)")
    buffer = next(network.buffers(), None)
    measured = trial_run(network, sample[:1].to(buffer.device if buffer is not None else "cpu"))
    neurons = [max(a, b) for a, b in zip(measured.neurons, estimate.neurons)] or measured.neurons
    return ActivationSizes(max(estimate.per_image, measured.per_image), max(estimate.largest, measured.largest),
                           neurons, measured.logits)


def _fit(what: str, fixed: int, per_item: int, batch_size: int, max_memory: int) -> int:
    if fixed + per_item > max_memory:
        raise ResourceError(
            f"{what} needs about {format_bytes(fixed + per_item)} even with batches of one image "
            f"({format_bytes(fixed)} kept for the whole run), over the memory budget of "
            f"{format_bytes(max_memory)}; use fewer images or timesteps, or raise --max-memory")
    fitted = max(1, min(batch_size, (max_memory - fixed) // max(1, per_item)))
    if fitted < batch_size:
        log.warning("%s: batch size lowered from %d to %d to stay within %s", what, batch_size, fitted,
                    format_bytes(max_memory))
    return int(fitted)


def calibration_batch_size(model: onnx.ModelProto, network, calibration: torch.Tensor, method: str,
                           timesteps: int, batch_size: int, max_memory: int | str | None) -> int:
    """The batch size that keeps calibration within ``max_memory`` (raises when none does)."""
    budget = parse_size(max_memory)
    check_input_shape(model, tuple(calibration.shape[1:]))
    sizes = measure(model, network, calibration[:1], budget)
    images = len(calibration)
    if str(method).startswith(("max", "percentile")):
        fixed = 0
        if str(method).startswith("percentile"):  # positive activations sampled per layer, then concatenated
            kept = [min(n * images, PERCENTILE_SAMPLES) * 4 for n in sizes.neurons]
            fixed = sum(kept) + max(kept, default=0)
        per_image = 2 * sizes.per_image  # the pass plus the probe's copies
    else:  # a layer-by-layer simulation of the calibration set (SpikeNorm, auto...)
        largest_layers = sorted(sizes.neurons, reverse=True)[:3]  # stored while later layers read them
        binary = not any(part.startswith(("signed", "burst")) for part in str(method).split("+")[1:])
        train_bytes = -(-timesteps // 8) if binary else timesteps  # binary trains: 8 steps to a byte
        kept_ann = 0 if str(method).startswith("spikenorm") else 4 * sum(largest_layers) * images
        fixed = (sum(largest_layers) * train_bytes * images + kept_ann + sizes.per_image * images // 4
                 + CALIBRATION_WORKING_SET)
        per_image = sizes.per_image
    return _fit("calibration", fixed, per_image, batch_size, budget)


def evaluation_batch_size(model: onnx.ModelProto, network, x: torch.Tensor, batch_size: int,
                          max_memory: int | str | None, classes: int | None = None) -> int:
    """The batch size that keeps a simulation within ``max_memory``; ``x`` is already loaded."""
    budget = parse_size(max_memory)
    check_input_shape(model, tuple(x.shape[1:]))
    sizes = measure(model, network, x[:1], budget)
    if classes is not None and sizes.logits is not None and sizes.logits < classes:
        raise ConfigError(f"the data set has {classes} classes but the model outputs only {sizes.logits} logits")
    fixed = x.numel() * x.element_size()
    # static env + one step's env + membrane state of every neuron (+ temporaries)
    per_image = 2 * sizes.per_image + 8 * sum(sizes.neurons)
    return _fit("evaluation", fixed, per_image, batch_size, budget)


def fit_calibration(model: onnx.ModelProto, network, calibration: torch.Tensor, options):
    """``options`` (a ConversionOptions) with the batch size lowered to fit ``options.max_memory``."""
    batch_size = calibration_batch_size(model, network, calibration, str(options.threshold),
                                        options.calibration_timesteps, options.batch_size,
                                        getattr(options, "max_memory", None))
    return dataclasses.replace(options, batch_size=batch_size)
