"""The three reference ANNs for CIFAR-10 (ReLU only, average pooling, so every one converts to IF neurons).

- ``small_cnn``: four conv layers with BatchNorm (the converter folds it), ~107k parameters, fast on a CPU.
- ``vgg5``: conv64 - avgpool - conv128 - conv128 - avgpool - FC4096 - FC4096 - FC10, dropout, no bias
  (Rathi et al. 2020). ``width`` scales the FC layers for CPU budgets (4096 is the paper's).
- ``vgg16``: the standard CIFAR VGG16 (13 conv + classifier) with average pooling instead of max pooling.
- ``vgg7_maxpool`` and ``resnet32``: models the low-latency methods were not tuned on (max pooling; a
  ResNet deeper than the shared ResNet-20).

``width_mult`` (vgg5 and vgg16) multiplies every conv and hidden FC width and keeps the layer
structure (same depth, pools, kernel sizes): 0.25 costs ~1/16 of the multiply-adds. A model trained
narrower is a different network; every figure made with it is labelled with its multiplier.
"""
from __future__ import annotations

from torch import nn


def conv_bn_relu(cin: int, cout: int, bias: bool = False) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=bias), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def small_cnn(classes: int = 10) -> nn.Module:
    """conv32 - pool - conv32 - pool - conv64 - pool - conv128 - pool - linear (~107k parameters).

    Pooling after every conv keeps it cheap (~6M multiply-adds per image, the first conv computed
    once per image in the SNN): it trains in a few minutes per epoch on two CPU cores, and its SNN
    simulates quickly enough for a demo.
    """
    return nn.Sequential(
        *conv_bn_relu(3, 32), nn.AvgPool2d(2),        # 16x16
        *conv_bn_relu(32, 32), nn.AvgPool2d(2),       # 8x8
        *conv_bn_relu(32, 64), nn.AvgPool2d(2),       # 4x4
        *conv_bn_relu(64, 128), nn.AvgPool2d(2),      # 2x2
        nn.Flatten(), nn.Linear(128 * 2 * 2, classes),
    )


def scaled(channels: int, width_mult: float) -> int:
    """A layer width times the multiplier, rounded, at least 1."""
    if width_mult <= 0:
        raise ValueError(f"width_mult must be positive, got {width_mult}")
    return max(1, round(channels * width_mult))


def vgg5(classes: int = 10, width: int = 4096, dropout: float = 0.2, width_mult: float = 1.0) -> nn.Module:
    """Rathi et al. 2020's VGG5: no bias anywhere, dropout after each ReLU of the classifier."""
    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.ReLU(inplace=True), nn.Dropout(dropout)]

    c64, c128, width = scaled(64, width_mult), scaled(128, width_mult), scaled(width, width_mult)
    model = nn.Sequential(
        *conv(3, c64), nn.AvgPool2d(2),                # 16x16
        *conv(c64, c128), *conv(c128, c128), nn.AvgPool2d(2),  # 8x8
        nn.Flatten(),
        nn.Linear(c128 * 8 * 8, width, bias=False), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(width, width, bias=False), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(width, classes, bias=False),
    )
    # Without BatchNorm or biases, PyTorch's default init shrinks the signal layer by layer (the loss
    # stayed at ln 10 for the first 40 steps of a run here); He init keeps each ReLU layer's variance.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model


VGG16_LAYOUT = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"]


def vgg16(classes: int = 10, width_mult: float = 1.0) -> nn.Module:
    """The CIFAR VGG16 (BatchNorm, folded at conversion) with average pooling; 512 -> classes head."""
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG16_LAYOUT:
        if item == "P":
            layers.append(nn.AvgPool2d(2))
        else:
            layers += conv_bn_relu(channels, scaled(item, width_mult))
            channels = scaled(item, width_mult)
    layers += [nn.Flatten(), nn.Dropout(0.2), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def vgg7_maxpool(classes: int = 10) -> nn.Module:
    """A small VGG with *max* pooling (conv32x2 - max - conv64x2 - max - conv128x2 - max - linear;
    ~290k parameters, ~39M multiply-adds): a model that `auto` was not tuned on, whose max pools
    become spiking max-pool gates in the SNN."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (32, 64, 128):
        layers += conv_bn_relu(channels, width) + conv_bn_relu(width, width) + [nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, classes))


class BasicBlock(nn.Module):
    """He et al.'s CIFAR residual block; a 1x1 convolution (with BatchNorm) projects the shortcut where
    the shape changes, so the whole block exports as Conv/Add/Relu."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def cifar_resnet(depth: int, classes: int = 10, width_mult: float = 1.0) -> nn.Module:
    """The CIFAR ResNet of depth 6n+2 (16-32-64 channels times ``width_mult``), global average pooling."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has depth 6n+2, got {depth}")
    blocks = (depth - 2) // 6
    widths = [scaled(c, width_mult) for c in (16, 32, 64)]
    layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                               nn.ReLU(inplace=True)]
    channels = widths[0]
    for stage, width in enumerate(widths):
        for block in range(blocks):
            layers.append(BasicBlock(channels, width, 2 if stage and not block else 1))
            channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes)]
    return nn.Sequential(*layers)


def resnet32(classes: int = 10, width_mult: float = 1.0) -> nn.Module:
    return cifar_resnet(32, classes, width_mult)


MODELS = {"small_cnn": small_cnn, "vgg5": vgg5, "vgg7_maxpool": vgg7_maxpool, "vgg16": vgg16, "resnet32": resnet32}


def build(name: str, **kwargs) -> nn.Module:
    return MODELS[name](**kwargs)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
