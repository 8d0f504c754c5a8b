"""The DeepLab v3+ decoder (Chen et al. 2018, Sec. 3.1, Fig. 2): ASPP features refined with low-level ones.

State-dict keys, relative to ``model.classifier``: ``aspp.*`` (as ``heads.ASPP``), ``reduce.{0,1}``
(1x1 conv + BN to 48 channels on the stride-4 features), ``fuse.{0,1,3,4}`` (two 3x3 convs + BN),
``cls`` (1x1 to classes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.heads import ASPP, classifier_conv, conv_bn_relu


class DeepLabV3PlusHead(nn.Module):
    """ASPP at output stride, upsampled to the low-level features, concat with their 48-channel
    reduction, two 3x3 convs, 1x1 to classes (logits at stride 4)."""

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        low_level_reduced: int = 48,
    ) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, atrous_rates, channels)
        self.reduce = nn.Sequential(*conv_bn_relu(low_level_channels, low_level_reduced))
        self.fuse = nn.Sequential(
            *conv_bn_relu(channels + low_level_reduced, channels, 3), *conv_bn_relu(channels, channels, 3)
        )
        self.cls = classifier_conv(channels, num_classes)

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low_level = self.reduce(low_level)
        x = F.interpolate(self.aspp(x), size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(self.fuse(torch.cat([x, low_level], dim=1)))
