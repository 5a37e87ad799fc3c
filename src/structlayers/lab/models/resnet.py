"""CIFAR-sized residual networks: ResNet18 (He et al., 2016, in the CIFAR variant of
kuangliu/pytorch-cifar) and Wide ResNet WRN-d-k (Zagoruyko & Komodakis, 2016)."""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; a strided 1x1 convolution on the shortcut when the
    shape changes (the pointwise modules that structured replacements target first)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A CIFAR ResNet: a 3x3 stem (no max-pool), four stages of ``blocks`` and a linear head."""

    def __init__(self, blocks: tuple[int, ...] = (2, 2, 2, 2), num_classes: int = 10, in_channels: int = 3,
                 width: int = 64) -> None:
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._stage(width, blocks[0], 1)
        self.layer2 = self._stage(2 * width, blocks[1], 2)
        self.layer3 = self._stage(4 * width, blocks[2], 2)
        self.layer4 = self._stage(8 * width, blocks[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8 * width, num_classes)

    def _stage(self, planes: int, n: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.fc(self.pool(out).flatten(1))


def resnet18(num_classes: int = 10, in_channels: int = 3, width: int = 64) -> ResNet:
    """ResNet18 for 32x32 inputs (11.17M parameters at width 64, 0.56 GMACs)."""
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width)


class WideBasic(nn.Module):
    """Pre-activation wide block: BN-ReLU-conv3x3 (-dropout) -BN-ReLU-conv3x3, 1x1 shortcut on change."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(self.dropout(out))))
        return out + self.shortcut(x)


class WideResNet(nn.Module):
    """WRN-``depth``-``widen`` for CIFAR: ``(depth - 4) / 6`` blocks per stage, widths 16k/32k/64k."""

    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 10, dropout: float = 0.0,
                 in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n + 4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.in_planes = widths[0]
        self.layer1 = self._stage(widths[1], n, 1, dropout)
        self.layer2 = self._stage(widths[2], n, 2, dropout)
        self.layer3 = self._stage(widths[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[3], num_classes)

    def _stage(self, planes: int, n: int, stride: int, dropout: float) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(WideBasic(self.in_planes, planes, s, dropout))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return self.fc(self.pool(out).flatten(1))


def wrn_28_10(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3) -> WideResNet:
    """WRN-28-10 for 32x32 inputs (36.5M parameters)."""
    return WideResNet(28, 10, num_classes, dropout, in_channels)
