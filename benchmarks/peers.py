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


def spikingjelly_runner(ann: nn.Module, calibration: torch.Tensor, multi_step: bool):
    """SpikingJelly's ann2snn Converter (percentile 99.9 like ours); returns ``run(x, T) -> logits``."""
    from spikingjelly.activation_based import ann2snn, functional

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(calibration, torch.zeros(len(calibration))),
                                         batch_size=len(calibration))
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%")
    snn = ann2snn.Converter(recipe).convert(ann).eval()
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
