"""Memory budget for evaluation (and, through ``converter/budget.py``, calibration), checked before
anything large is allocated.

The activation memory of one image comes from ONNX shape inference on the graph (each neuron
counted as the ReLU it replaces), so an absurd graph is refused before torch allocates a byte.
A trial run on one image then measures what the runtime really holds per image (and proves
that the graph runs at all). From both, and from what the method keeps for the whole data set
(SpikeNorm's stored spike trains, percentile samples, the input tensor), the batch size is
lowered to fit ``max_memory``; when not even one image fits, a ``ResourceError`` says why.
The figures are estimates with a safety margin, not a guarantee from the allocator.
"""
from __future__ import annotations

import dataclasses
import logging
import math

import onnx
import torch

from .dialect import as_standard_onnx, is_neuron_node
from .errors import ConfigError, InvalidModelError, ResourceError
from .sizes import format_bytes, parse_size

log = logging.getLogger(__name__)


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
    probe = as_standard_onnx(model)
    graph = probe.graph
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
    neurons = [shapes.get(node.output[0], 0) for node in model.graph.node if is_neuron_node(node)]
    return ActivationSizes(sum(sizes), max(sizes), neurons)


def trial_run(network, sample: torch.Tensor) -> ActivationSizes:
    """Run the analog graph on one image: proves it runs, returns 2-D logits, and measures it."""
    constants = set(network.constant_env())
    try:
        env = network.analog_tensors(sample)
    except (RuntimeError, ValueError, IndexError) as error:  # torch's shape errors ("dimension out of range")
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InvalidModelError(f"the graph fails on one input image [1, {', '.join(map(str, sample.shape[1:]))}] "
                                f"({type(error).__name__}: {first})") from error
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
                            f"the memory budget of {format_bytes(max_memory)} (max_memory)", parameter="max_memory")
    buffer = next(network.buffers(), None)
    measured = trial_run(network, sample[:1].to(buffer.device if buffer is not None else "cpu"))
    neurons = [max(a, b) for a, b in zip(measured.neurons, estimate.neurons)] or measured.neurons
    return ActivationSizes(max(estimate.per_image, measured.per_image), max(estimate.largest, measured.largest),
                           neurons, measured.logits)


def fit_batch(what: str, fixed: int, per_item: int, batch_size: int, max_memory: int) -> int:
    if fixed + per_item > max_memory:
        raise ResourceError(
            f"{what} needs about {format_bytes(fixed + per_item)} even with batches of one image "
            f"({format_bytes(fixed)} kept for the whole run), over the memory budget of "
            f"{format_bytes(max_memory)}; use fewer images or timesteps, or raise max_memory", parameter="max_memory")
    fitted = max(1, min(batch_size, (max_memory - fixed) // max(1, per_item)))
    if fitted < batch_size:
        log.warning("%s: batch size lowered from %d to %d to stay within %s", what, batch_size, fitted,
                    format_bytes(max_memory))
    return int(fitted)


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
    return fit_batch("evaluation", fixed, per_image, batch_size, budget)
