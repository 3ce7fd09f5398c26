"""Small torch models of the architectures users convert, and the exporters they use.

Widths are narrow (8-32 channels) and inputs CIFAR-sized (3x32x32) so that the exporter x
architecture matrix runs in seconds. Weights are random; BatchNorm running statistics are
randomized too, so folding them is never a no-op.
"""
from __future__ import annotations

import os
import tempfile
import warnings

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from onnx2snn.dialect import load_model


def _randomize_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            size = module.num_features
            module.weight.data = 0.5 + torch.rand(size, generator=generator)
            module.bias.data = 0.2 * torch.randn(size, generator=generator)
            module.running_mean.data = 0.2 * torch.randn(size, generator=generator)
            module.running_var.data = 0.5 + torch.rand(size, generator=generator)
    return model.eval()


class Preprocess(nn.Module):
    """In-graph input normalization, as some users export it: (x - mean) / std."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def conv_bn(cin, cout, stride=1, kernel=3, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class VGG11(nn.Module):
    """VGG-11 with BN (configuration A), channels divided by 16 (or 8)."""

    def __init__(self, width: int = 4, classes: int = 10):
        super().__init__()
        cfg = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
        layers, cin = [Preprocess()], 3
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [*conv_bn(cin, item * width), nn.ReLU(inplace=True)]
                cin = item * width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin, 32), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(32, classes))

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.conv2 = conv_bn(cin, cout, stride), conv_bn(cout, cout)
        self.shortcut = conv_bn(cin, cout, stride, kernel=1) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        out = F.relu(self.conv1(x))
        return F.relu(self.conv2(out) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (basic blocks [2, 2, 2, 2], projection shortcuts), CIFAR stem."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, width)
        blocks, cin = [], width
        for stage, multiplier in enumerate((1, 2, 4, 4)):
            for index in range(2):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(cin, width * multiplier, stride))
                cin = width * multiplier
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            *conv_bn(cin, hidden, kernel=1), nn.ReLU6(),
            *conv_bn(hidden, hidden, stride, groups=hidden), nn.ReLU6(),
            *conv_bn(hidden, cout, kernel=1))  # linear bottleneck: no activation

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class MobileNetV2(nn.Module):
    """MobileNetV2-style: depthwise convs, ReLU6, linear bottlenecks, residuals."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.pre = Preprocess()
        self.stem = nn.Sequential(*conv_bn(3, width), nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(width, width, 1, 2), InvertedResidual(width, 2 * width, 2, 3),
                                    InvertedResidual(2 * width, 2 * width, 1, 3))
        self.head = nn.Sequential(*conv_bn(2 * width, 4 * width, kernel=1), nn.ReLU6())
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(self.pre(x))))
        return self.fc(x.mean(dim=(2, 3)))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 2 * growth, 1, bias=False),
                                  nn.BatchNorm2d(2 * growth), nn.ReLU(),
                                  nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


class DenseNet(nn.Module):
    """A DenseNet-style block: Concat of features, pre-activation BN -> ReLU -> Conv, transition."""

    def __init__(self, growth: int = 6, classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 2 * growth, 3, padding=1)
        layers, cin = [], 2 * growth
        for _ in range(3):
            layers.append(DenseLayer(cin, growth))
            cin += growth
        self.block = nn.Sequential(*layers)
        self.transition = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, cin // 2, 1), nn.AvgPool2d(2))
        self.final = nn.Sequential(nn.BatchNorm2d(cin // 2), nn.ReLU())
        self.fc = nn.Linear(cin // 2, classes)

    def forward(self, x):
        x = self.final(self.transition(self.block(self.stem(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MaxPoolNet(nn.Module):
    """Conv/ReLU with overlapping, padded and plain max pooling; a dynamic-batch flatten."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.pool1 = nn.MaxPool2d(3, 2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(2 * width * 8 * 8, classes)

    def forward(self, x):
        x = self.pool2(F.relu(self.conv2(self.pool1(F.relu(self.conv1(x))))))
        return self.fc(x.view(x.size(0), -1))


ARCHITECTURES = {"vgg11_bn": VGG11, "resnet18": ResNet18, "mobilenet_v2": MobileNetV2,
                 "densenet": DenseNet, "maxpool": MaxPoolNet}


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return _randomize_batchnorm(ARCHITECTURES[name](), seed)


# Each exporter: (dynamo, opset, constant folding, dynamic batch).
EXPORTERS = {
    "torchscript-11": (False, 11, True, False),
    "torchscript-13-nofold": (False, 13, False, True),
    "torchscript-17": (False, 17, True, True),
    "dynamo-18": (True, 18, True, False),
}


def export(model: nn.Module, exporter: str, folder: str | os.PathLike | None = None,
           batch: int = 2) -> onnx.ModelProto:
    """Export ``model`` as the named exporter does, write it (dynamo: with external data), read it back."""
    dynamo, opset, folding, dynamic = EXPORTERS[exporter]
    example = (torch.randn(batch, 3, 32, 32),)
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(folder or scratch, f"{exporter}.onnx")
        kwargs = {"opset_version": opset, "input_names": ["x"], "output_names": ["y"], "dynamo": dynamo}
        if dynamo:
            kwargs["external_data"] = True
        else:
            kwargs["do_constant_folding"] = folding
            if dynamic:
                kwargs["dynamic_axes"] = {"x": {0: "N"}, "y": {0: "N"}}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example, path, **kwargs)
        return load_model(path)
