"""Atrous ResNet-50/101 (He et al. 2016) with DeepLab's output_stride, multi_grid and cascaded blocks.

State-dict keys are torchvision's ``resnet50``/``resnet101`` keys without ``fc``: ``conv1``, ``bn1``,
``layer1``..``layer4``, each unit ``N.conv1/bn1/conv2/bn2/conv3/bn3`` and ``N.downsample.0/1``, so an
ImageNet checkpoint loads as is. The copies of block4 of DeepLab v3 "going deeper" (Sec. 3.2) are
``layer5``..``layer7`` with the same inner layout. The stride of a stage sits on its first unit's
3x3 conv (torchvision's "v1.5" layout); ``stride_in_1x1=True`` puts it on the 1x1 reduce conv and
the projection instead, and ``stem_ceil_mode=True`` rounds the stem's max-pool output up: the
original MSRA/Caffe ResNet of the DeepLab v2 release (kazuto1011/deeplab-pytorch's conversion).
``deep_stem=True`` replaces the 7x7 stem conv by three 3x3 convs (32, 32, 64 channels; keys
``stem.{0,1,3,4,6,7}``): the "ResNetV1c" of mmsegmentation.

Atrous convolution (v2 Sec. 3.1, v3 Sec. 3.1): a stage whose stride would take the feature map
below 1/output_stride keeps stride 1 and multiplies the atrous rate by that stride instead, so an
H x W input gives a ceil(H/os) x ceil(W/os) map. Unit i of block4 and its copies uses
``rate * multi_grid[i]`` when the block is atrous (v3 Sec. 3.2; at output stride 32 block4 is a
plain strided block); every other unit uses the stage rate, as in the papers' reference code. ``torchvision_dilation=True`` reproduces torchvision's variant instead,
where the first unit of a dilated stage keeps the previous stage's rate (needed for its weights).
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models._utils import AtrousPlan, init_weights

DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided or atrous), 1x1 expand by 4, plus the identity or projection."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, stride_in_1x1: bool = False
    ) -> None:
        super().__init__()
        out = planes * self.expansion
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride_3x3, padding=dilation, dilation=dilation, bias=False)
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
        torchvision_dilation: bool = False,
        stride_in_1x1: bool = False,
        stem_ceil_mode: bool = False,
        deep_stem: bool = False,
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
        if deep_stem:
            stem = [nn.Conv2d(3, 32, 3, 2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
            stem += [nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True)]
            stem += [nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
            self.stem = nn.Sequential(*stem)
        else:
            self.stem = None
            self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=stem_ceil_mode)
        units = DEPTHS[depth] + (3,) * extra_blocks
        planes = (64, 128, 256, 512) + (512,) * extra_blocks
        self.num_stages = len(units)
        self.unit_rates: dict[str, list[int]] = {}
        inplanes = 64
        for index, (n, width) in enumerate(zip(units, planes)):
            previous_rate = plan.rate
            stride, atrous = plan.step(1 if index == 0 else 2)
            grid = multi_grid if (index >= 3 and multi_grid and atrous) else (1,) * n
            rates = [plan.rate * g for g in grid]
            if torchvision_dilation:
                rates[0] = previous_rate * grid[0]
            name = f"layer{index + 1}"
            self.unit_rates[name] = rates
            blocks = [
                Bottleneck(inplanes if i == 0 else width * 4, width, stride if i == 0 else 1, r, stride_in_1x1)
                for i, r in enumerate(rates)
            ]
            setattr(self, name, nn.Sequential(*blocks))
            inplanes = width * 4
        self.out_channels, self.aux_channels, self.low_level_channels = 2048, 1024, 256
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x))) if self.stem is None else self.stem(x)
        x = self.maxpool(x)
        features = {}
        for index in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{index}")(x)
            if index == 1:
                features["low_level"] = x
            elif index == 3:
                features["aux"] = x
        features["out"] = x
        return features
