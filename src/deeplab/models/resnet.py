"""Atrous ResNet-50/101 (He et al. 2016) with DeepLab's output_stride, multi_grid and cascaded blocks.

State-dict keys are torchvision's ``resnet50``/``resnet101`` keys without ``fc``: ``conv1``, ``bn1``,
``layer1``..``layer4``, each unit ``N.conv1/bn1/conv2/bn2/conv3/bn3`` and ``N.downsample.0/1``, so an
ImageNet checkpoint loads as is. The copies of block4 of DeepLab v3 "going deeper" (Sec. 3.2) are
``layer5``..``layer7`` with the same inner layout. The stride of a stage sits on its first unit's
3x3 conv (torchvision's "v1.5" layout). The released models' other ResNets (Caffe's, mmseg's deep
stem, torchvision's dilation) are in ``variants``.

Atrous convolution (v2 Sec. 3.1, v3 Sec. 3.1): a stage whose stride would take the feature map
below 1/output_stride keeps stride 1 and multiplies the atrous rate by that stride instead, so an
H x W input gives a ceil(H/os) x ceil(W/os) map. Unit i of block4 and its copies uses
``rate * multi_grid[i]`` when the block is atrous (v3 Sec. 3.2; at output stride 32 block4 is a
plain strided block); every other unit uses the stage rate, as in the papers' reference code.
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models._utils import AtrousPlan, init_weights

DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided or atrous), 1x1 expand by 4, plus the identity or projection."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet(nn.Module):
    """Atrous ResNet backbone; ``forward`` returns {"low_level": layer1, "aux": layer3, "out": last}."""

    pretrained_ignore = ("fc.",)  # ImageNet classifier keys skipped when loading backbone weights

    def __init__(
        self,
        depth: int = 101,
        output_stride: int = 16,
        multi_grid: tuple[int, ...] | None = None,
        extra_blocks: int = 0,
    ) -> None:
        super().__init__()
        plan = AtrousPlan(output_stride, current_stride=4)  # the stem has stride 4
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth!r}")
        if multi_grid is not None and (len(multi_grid) != 3 or min(multi_grid) < 1):
            raise ValueError(f"multi_grid must be 3 positive rates (one per block4 unit), got {multi_grid!r}")
        if extra_blocks < 0:
            raise ValueError(f"extra_blocks must be >= 0, got {extra_blocks!r}")
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        units = DEPTHS[depth] + (3,) * extra_blocks
        planes = (64, 128, 256, 512) + (512,) * extra_blocks
        self.num_stages = len(units)
        self.unit_rates: dict[str, list[int]] = {}  # each unit's atrous rate, by stage
        self.stage_rates: list[int] = []  # the rate of each stage before multi-grid
        inplanes = 64
        for index, (n, width) in enumerate(zip(units, planes)):
            stride, atrous = plan.step(1 if index == 0 else 2)
            grid = multi_grid if (index >= 3 and multi_grid and atrous) else (1,) * n
            rates = [plan.rate * g for g in grid]
            name = f"layer{index + 1}"
            self.unit_rates[name] = rates
            self.stage_rates.append(plan.rate)
            blocks = [
                Bottleneck(inplanes if i == 0 else width * 4, width, stride if i == 0 else 1, r)
                for i, r in enumerate(rates)
            ]
            setattr(self, name, nn.Sequential(*blocks))
            inplanes = width * 4
        self.out_channels, self.aux_channels, self.low_level_channels = 2048, 1024, 256
        init_weights(self)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-4 stem: 7x7 conv + BN + ReLU, 3x3 max-pool."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.forward_stem(x)
        features = {}
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
            if index == 1:
                features["low_level"] = x
            elif index == 3:
                features["aux"] = x
        features["out"] = x
        return features
