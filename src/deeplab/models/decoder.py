"""The DeepLab v3+ decoder (Chen et al. 2018, Sec. 3.1, Fig. 2): ASPP features refined with low-level ones.

State-dict keys, relative to ``model.classifier``: ``aspp.*`` (as ``heads.ASPP``), ``reduce.{0,1}``
(1x1 conv + BN to 48 channels on the stride-4 features), ``fuse.{0,1,3,4}`` (two 3x3 convs + BN),
``cls`` (1x1 to classes). With ``separable=True`` (v3+ Sec. 3.2, used by the MobileNetV2 preset) each
3x3 conv is a depthwise 3x3 + BN + ReLU and a pointwise 1x1 + BN + ReLU: ``fuse.{0,1,3,4,6,7,9,10}``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.heads import ASPP, classifier_conv, conv_bn_relu


def separable_conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> list[nn.Module]:
    """Depthwise conv + BN + ReLU, then pointwise 1x1 + BN + ReLU (an atrous separable conv at rate 1)."""
    depthwise = nn.Conv2d(
        in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
    )
    return [depthwise, nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True), *conv_bn_relu(in_channels, out_channels)]


class DeepLabV3PlusHead(nn.Module):
    """ASPP at output stride, upsampled to the low-level features, concat with their 48-channel
    reduction, two 3x3 convs, 1x1 to classes (logits at stride 4).

    Variants of released models: ``fuse_convs=1`` (one 3x3 conv after the concatenation) and
    ``low_level_first=True`` (concatenate [low-level, ASPP]), as in VainF/DeepLabV3Plus-Pytorch.
    """

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        low_level_reduced: int = 48,
        separable: bool = False,
        image_pooling: bool = True,
        fuse_convs: int = 2,
        low_level_first: bool = False,
    ) -> None:
        super().__init__()
        if fuse_convs not in (1, 2):
            raise ValueError(f"fuse_convs must be 1 or 2, got {fuse_convs!r}")
        self.low_level_first = low_level_first
        self.aspp = ASPP(in_channels, atrous_rates, channels, image_pooling)
        self.reduce = nn.Sequential(*conv_bn_relu(low_level_channels, low_level_reduced))
        block = separable_conv_bn_relu if separable else conv_bn_relu
        layers = block(channels + low_level_reduced, channels, 3)
        if fuse_convs == 2:
            layers += block(channels, channels, 3)
        self.fuse = nn.Sequential(*layers)
        self.cls = classifier_conv(channels, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low_level = self.reduce(features["low_level"])
        x = F.interpolate(self.aspp(features["out"]), size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        parts = [low_level, x] if self.low_level_first else [x, low_level]
        return self.cls(self.fuse(torch.cat(parts, dim=1)))
