"""The shared ResNet-20 as a plain torch model (nn.Conv2d/nn.ReLU/nn.Linear) built from the ONNX
weights, and the peer simulators that convert it: SpikingJelly's ann2snn and Sinabs' from_model.

The peers are optional (``pip install -e '.[bench]'``); every function here says so when they are
missing instead of failing. Only used by benchmarks/runtime.py.
"""
from __future__ import annotations

import onnx
import torch
from onnx import numpy_helper
from torch import nn


class BasicBlock(nn.Module):
    """He et al.'s CIFAR block with the option-A shortcut (stride-2 subsampling, zero channels)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.relu2 = nn.ReLU()
        # Standard modules only (SpikingJelly's FX recipe rejects functional pads, slices and
        # ConstantPad3d): the option-A shortcut x[:, :, ::2, ::2] with zero channels on both sides
        # is exactly a fixed 1x1 stride-2 convolution with a 0/1 embedding matrix (a little more work).
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            pad = (cout - cin) // 2
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)
            with torch.no_grad():
                self.shortcut.weight.zero_()
                for c in range(cin):
                    self.shortcut.weight[c + pad, c] = 1.0

    def forward(self, x):
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1)
        self.relu = nn.ReLU()
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(self.flatten(self.pool(self.blocks(self.relu(self.conv1(x))))))


def resnet20_from_onnx(path) -> ResNet20:
    """Load the BN-folded conv weights of the shared ResNet-20 export in graph order."""
    model = onnx.load(str(path))
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    gemms = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")]
    net = ResNet20()
    targets = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    if len(convs) != len(targets) or len(gemms) != 1:
        raise ValueError("this ONNX file is not the shared ResNet-20 layout")
    with torch.no_grad():
        for node, conv in zip(convs, targets):
            conv.weight.copy_(weights[node.input[1]])
            conv.bias.copy_(weights[node.input[2]])
        gemm = gemms[0]
        w = weights[gemm.input[1]]
        net.linear.weight.copy_(w if w.shape == net.linear.weight.shape else w.t())
        net.linear.bias.copy_(weights[gemm.input[2]])
    return net.eval()


def available() -> dict[str, str]:
    """Installed peers and their versions (importable, not just listed)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("spikingjelly", "sinabs"):
        try:
            if importlib.util.find_spec(name) is not None:
                found[name] = version(name)
        except (PackageNotFoundError, ImportError, ValueError):
            continue
    return found


def spikingjelly_snn(ann: nn.Module, calibration: torch.Tensor, mode: str = "99.9%", batch: int | None = None):
    """SpikingJelly's documented ann2snn recipe: ``Converter(RateCodingRecipe(dataloader, mode))`` records
    each ReLU's ``mode`` statistic per calibration batch (running average, momentum 0.1) and replaces
    the ReLU by scale-down, IF neuron (threshold 1, soft reset), scale-up. Single-step mode."""
    from spikingjelly.activation_based import ann2snn

    dataset = torch.utils.data.TensorDataset(calibration, torch.zeros(len(calibration)))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch or len(calibration))
    return ann2snn.Converter(ann2snn.RateCodingRecipe(dataloader=loader, mode=mode)).convert(ann).eval()


def spikingjelly_runner(ann: nn.Module, calibration: torch.Tensor, multi_step: bool, mode: str = "99.9%"):
    """SpikingJelly's ann2snn Converter (percentile 99.9 like ours); returns ``run(x, T) -> logits``."""
    from spikingjelly.activation_based import functional

    snn = spikingjelly_snn(ann, calibration, mode)
    if multi_step:
        functional.set_step_mode(snn, "m")

    @torch.inference_mode()
    def run(x, timesteps):
        functional.reset_net(snn)
        if multi_step:
            return snn(x.unsqueeze(0).expand(timesteps, *x.shape).contiguous()).mean(0)
        total = 0
        for _ in range(timesteps):
            total = total + snn(x)
        return total / timesteps
    return run


@torch.inference_mode()
def spikingjelly_prefix_logits(snn: nn.Module, x: torch.Tensor, timesteps) -> dict[int, torch.Tensor]:
    """One single-step simulation to max(timesteps); the output summed over the first T steps, per T."""
    from spikingjelly.activation_based import functional

    functional.reset_net(snn)
    wanted, sums, total = set(timesteps), {}, 0
    for t in range(1, max(timesteps) + 1):
        total = total + snn(x)
        if t in wanted:
            sums[t] = total.clone()
    return sums


class Gain(nn.Module):
    """A learnable scalar in place of the identity shortcut: a parameter for the weight normalization to
    rescale, so a block's sum (conv2 + shortcut) is normalized as a whole (x * 1.0 before it)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return x * self.gain


class _FlatView(nn.Module):
    """``sinabs.utils.normalize_weights`` looks layers up among ``named_children()`` (a sequential model):
    this view lists the residual net's layers by flat name and runs the net itself."""

    def __init__(self, net: nn.Module, extra: dict[str, nn.Module]):
        super().__init__()
        self.net = net
        for name, module in list(net.named_modules())[1:]:
            setattr(self, name.replace(".", "_"), module)
        for name, module in extra.items():
            setattr(self, name, module)

    def forward(self, x):
        return self.net(x)


def sinabs_normalized(ann: ResNet20, calibration: torch.Tensor, percentile: float = 99.99,
                      bias_fix: bool = True) -> ResNet20:
    """A copy of ``ann`` rescaled with Sinabs' data-based weight normalization (``sinabs.utils.normalize_weights``,
    after Rueckauer et al. 2017): layer by layer, in order, each ReLU's ``percentile`` on the calibration
    images (the earlier layers already rescaled) divides the parameters feeding it. For the second ReLU of
    a block those are conv2 and the shortcut together (a ``Gain`` for identity shortcuts).

    ``normalize_weights`` divides a layer's bias by the same factor as its weights, which is exact only
    without biases (Sinabs' tutorial networks have none): the input arrives divided by its own scale
    ``lam_in``, so the bias must be too (Rueckauer: W * lam_in / lam_out, b / lam_out). With ``bias_fix``
    each layer's bias is divided by ``lam_in`` (and a shortcut's gain by lam_x / lam_h, so both terms of a
    block's sum share a scale) before the utility runs on it; without, the utility runs as is."""
    import copy

    from sinabs.utils import normalize_weights

    net = copy.deepcopy(ann)
    extra = {}
    for i, block in enumerate(net.blocks):
        if isinstance(block.shortcut, nn.Identity):
            block.shortcut = Gain()
        extra[f"into_block{i}_relu2"] = nn.ModuleList([block.conv2, block.shortcut])
    view = _FlatView(net, extra)

    def normalize(output: str, params: str, probe: nn.Module) -> float:
        """One call of the utility; returns the factor it divided by (read off a weight)."""
        before = probe.weight.abs().max().item()
        normalize_weights(view, calibration, [output], [params], percentile=percentile)
        return before / probe.weight.abs().max().item()

    with torch.no_grad():
        stream = normalize("relu", "conv1", net.conv1)  # the image arrives unscaled
        for i, block in enumerate(net.blocks):
            if bias_fix:
                block.conv1.bias /= stream
            hidden = stream * normalize(f"blocks_{i}_relu1", f"blocks_{i}_conv1", block.conv1)
            if bias_fix:
                block.conv2.bias /= hidden
                for p in block.shortcut.parameters():
                    p *= stream / hidden
            stream = hidden * normalize(f"blocks_{i}_relu2", f"into_block{i}_relu2", block.conv2)
        if bias_fix:  # the classifier's logits scale with its input: its bias too, for the same argmax
            net.linear.bias /= stream
    return net.eval()


def sinabs_snn(ann: nn.Module, block: int):
    """Sinabs' ``from_model`` with its defaults (IAF, threshold 1, subtractive reset, several spikes per
    step allowed, membrane floor -1), time folded into the batch ``block`` steps at a time."""
    import copy

    from sinabs.from_torch import from_model

    return from_model(copy.deepcopy(ann), input_shape=(3, 32, 32), num_timesteps=block, add_spiking_output=False)


@torch.inference_mode()
def sinabs_prefix_logits(snn: nn.Module, x: torch.Tensor, timesteps, block: int) -> dict[int, torch.Tensor]:
    """One simulation to max(timesteps), ``block`` steps per call (the state carries over between calls);
    the output summed over the first T steps, per T."""
    snn.reset_states()
    wanted, sums, done, total = set(timesteps), {}, 0, 0
    folded = x.unsqueeze(1).expand(x.shape[0], block, *x.shape[1:]).reshape(-1, *x.shape[1:])
    while done < max(timesteps):
        steps = snn(folded).reshape(x.shape[0], block, -1).cumsum(1) + total
        for t in wanted:
            if done < t <= done + block:
                sums[t] = steps[:, t - done - 1].clone()
        total, done = steps[:, -1:].clone(), done + block
    return sums


def sinabs_runner(ann: nn.Module, batch: int, timesteps: int):
    """Sinabs' from_model (IAF neurons, time folded into the batch); returns ``run(x, T) -> logits``."""
    import copy

    from sinabs.from_torch import from_model

    snn = from_model(copy.deepcopy(ann), input_shape=(3, 32, 32), batch_size=batch, add_spiking_output=False)

    @torch.inference_mode()
    def run(x, steps):
        snn.reset_states()
        folded = x.unsqueeze(1).expand(x.shape[0], steps, *x.shape[1:]).reshape(-1, *x.shape[1:])
        return snn(folded).reshape(x.shape[0], steps, -1).mean(1)
    return run
