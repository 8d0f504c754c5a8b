"""Segmentation heads: LargeFOV (v1), ASPP with summed branches (v2), ASPP with BN and image pooling (v3).

State-dict keys, relative to ``model.classifier``:
- ``SumBranches`` of ``FCBranch`` (VGG v1 LargeFOV = one branch, v2 ASPP-S/L = four):
  ``branches.N.fc6`` (3x3 atrous), ``branches.N.fc7`` (1x1), ``branches.N.fc8`` (1x1 to classes).
- ``SumBranches`` of plain convs (v2 ResNet-101 ASPP-L): ``branches.N.weight/bias``.
- ``DeepLabV3Head``: torchvision's ``DeepLabHead`` keys, so its weights load unchanged:
  ``0.convs.0.{0,1}`` (1x1 + BN), ``0.convs.{1,2,3}.{0,1}`` (3x3 atrous + BN),
  ``0.convs.4.{1,2}`` (image pooling 1x1 + BN), ``0.project.{0,1}`` (1x1 projection + BN),
  ``1``/``2`` (3x3 conv + BN), ``4`` (1x1 to classes). The 3x3 conv after the projection is
  torchvision's addition to the paper's head (v3 Sec. 3.3 goes from the projection straight to the
  classes); it is kept for weight compatibility.
- ``ASPPHead`` (v3 as written, TensorFlow's models): ``0.*`` as ``DeepLabV3Head``'s, ``1`` (1x1 to classes).
- ``CascadeHead`` (v3 cascade, no ASPP): ``weight``/``bias`` of one 1x1 conv to classes.
- ``FCNHead`` (auxiliary head on layer3, torchvision's ``aux_classifier``): ``0``/``1`` (3x3 + BN),
  ``4`` (1x1 to classes).

Every head's ``forward`` takes the backbone's feature dict ({"out", "low_level", "aux"}) and picks
what it needs, so ``DeepLab.forward`` treats all heads alike.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn


def classifier_conv(in_channels: int, num_classes: int, kernel_size: int = 1, rate: int = 1) -> nn.Conv2d:
    """The final conv to class logits, initialised N(0, 0.01) as in the DeepLab releases."""
    conv = nn.Conv2d(in_channels, num_classes, kernel_size, padding=rate * (kernel_size // 2), dilation=rate)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(cast(torch.Tensor, conv.bias))
    return conv


class FCBranch(nn.Module):
    """VGG fc6 (3x3 at ``rate``), fc7 (1x1), fc8 (1x1 to classes), ReLU and dropout 0.5 between."""

    def __init__(self, in_channels: int, num_classes: int, rate: int, channels: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate)
        self.fc7 = nn.Conv2d(channels, channels, 1)
        self.fc8 = classifier_conv(channels, num_classes)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.fc6(x)))
        x = self.dropout(self.relu(self.fc7(x)))
        return self.fc8(x)


class SumBranches(nn.Module):
    """Runs parallel branches on the same features and sums their logits (v2 ASPP, v2 Fig. 4)."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        x = features["out"]
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def largefov_head(in_channels: int, num_classes: int, rates: tuple[int, ...], channels: int = 1024) -> SumBranches:
    """DeepLab-LargeFOV (one rate) or DeepLab v2 VGG ASPP (one fc6-fc7-fc8 branch per rate)."""
    return SumBranches([FCBranch(in_channels, num_classes, r, channels) for r in rates])


def aspp_v2_head(in_channels: int, num_classes: int, rates: tuple[int, ...]) -> SumBranches:
    """DeepLab v2 ResNet ASPP: one 3x3 conv per rate straight to classes, summed."""
    return SumBranches([classifier_conv(in_channels, num_classes, 3, r) for r in rates])


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, rate: int = 1) -> list[nn.Module]:
    """Conv (no bias), BN, ReLU as a list of layers."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel_size, padding=rate * (kernel_size // 2), dilation=rate, bias=False
    )
    return [conv, nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def separable_conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, rate: int = 1) -> list[nn.Module]:
    """An atrous separable conv (v3+ Sec. 3.1): depthwise kxk at ``rate`` + BN + ReLU, then pointwise
    1x1 + BN + ReLU: layers [dw, BN, ReLU, pw, BN, ReLU]."""
    depthwise = nn.Conv2d(
        in_channels,
        in_channels,
        kernel_size,
        padding=rate * (kernel_size // 2),
        dilation=rate,
        groups=in_channels,
        bias=False,
    )
    return [depthwise, nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), *conv_bn_relu(in_channels, out_channels)]


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, upsampled back (v3 Sec. 3.3)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), *conv_bn_relu(in_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(super().forward(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """v3 ASPP (Sec. 3.3): 1x1 + one 3x3 per atrous rate + image pooling, each with BN, concatenated,
    then a 1x1 projection. ``separable`` makes the 3x3 branches atrous separable convs (v3+ Sec. 3.2);
    ``image_pooling=False`` is the ablation of v3 Table 5."""

    def __init__(
        self,
        in_channels: int,
        atrous_rates: tuple[int, ...],
        out_channels: int = 256,
        image_pooling: bool = True,
        separable: bool = False,
    ) -> None:
        super().__init__()
        branches = [nn.Sequential(*conv_bn_relu(in_channels, out_channels))]
        for rate in atrous_rates:
            branches.append(nn.Sequential(*self.atrous_branch(in_channels, out_channels, rate, separable)))
        if image_pooling:
            branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(branches)
        self.project: nn.Module = nn.Sequential(
            *conv_bn_relu(len(branches) * out_channels, out_channels), nn.Dropout(0.5)
        )
        self.out_channels = out_channels

    def atrous_branch(self, in_channels: int, out_channels: int, rate: int, separable: bool) -> list[nn.Module]:
        """The layers of one 3x3 branch at ``rate``."""
        if separable:
            return separable_conv_bn_relu(in_channels, out_channels, 3, rate)
        return conv_bn_relu(in_channels, out_channels, 3, rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


class DeepLabV3Head(nn.Sequential):
    """ASPP, 3x3 conv + BN + ReLU, 1x1 to classes (torchvision's ``DeepLabHead`` layout). ``aspp``
    replaces the paper's pyramid (``ASPP(in_channels, atrous_rates, channels)``) by another one."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        aspp: ASPP | None = None,
    ) -> None:
        pyramid = aspp or ASPP(in_channels, atrous_rates, channels)
        super().__init__(
            pyramid,
            *conv_bn_relu(pyramid.out_channels, channels, 3),
            classifier_conv(channels, num_classes),
        )

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(features["out"])


class ASPPHead(nn.Sequential):
    """v3 Sec. 3.3 as written: ASPP (concatenation, 1x1 projection + BN), then the 1x1 conv to class
    logits; TensorFlow's DeepLab models. Keys: ``0.*`` (as ``ASPP``), ``1`` (logits). ``aspp``
    replaces the paper's pyramid (``ASPP(in_channels, atrous_rates, channels)``) by another one."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        aspp: ASPP | None = None,
    ) -> None:
        pyramid = aspp or ASPP(in_channels, atrous_rates, channels)
        super().__init__(pyramid, classifier_conv(pyramid.out_channels, num_classes))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(features["out"])


class CascadeHead(nn.Conv2d):
    """DeepLab v3 cascade (Sec. 3.2): block7's features straight to classes with a 1x1 conv."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__(in_channels, num_classes, 1)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(cast(torch.Tensor, self.bias))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return super().forward(features["out"])


class FCNHead(nn.Sequential):
    """Auxiliary head on layer3: 3x3 conv to in/4 channels + BN + ReLU, dropout 0.1, 1x1 to classes."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = in_channels // 4
        super().__init__(*conv_bn_relu(in_channels, inter, 3), nn.Dropout(0.1), classifier_conv(inter, num_classes))

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return super().forward(features["aux"])
