"""The DeepLab v3+ decoder (Chen et al. 2018, Sec. 3.1, Fig. 2): ASPP features refined with low-level ones.

State-dict keys, relative to ``model.classifier``: ``aspp.*`` (as ``heads.ASPP``), ``reduce.{0,1}``
(1x1 conv + BN to 48 channels on the stride-4 features), ``fuse.{0,1,3,4}`` (two 3x3 convs + BN),
``cls`` (1x1 to classes). With ``separable=True`` (v3+ Sec. 3.2, used by the MobileNetV2 preset) each
3x3 conv is a depthwise 3x3 + BN + ReLU and a pointwise 1x1 + BN + ReLU: ``fuse.{0,1,3,4,6,7,9,10}``.
The released models' variants of this decoder (VainF, segmentation_models_pytorch, mmsegmentation)
are ``variants.PeerV3PlusHead``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.heads import ASPP, classifier_conv, conv_bn_relu, separable_conv_bn_relu


class DeepLabV3PlusHead(nn.Module):
    """ASPP at output stride, upsampled to the low-level features, concatenated with their 48-channel
    reduction, two 3x3 convs, 1x1 to classes (logits at stride 4). ``aspp`` replaces the paper's
    pyramid by another one."""

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        low_level_reduced: int = 48,
        separable: bool = False,
        aspp: ASPP | None = None,
    ) -> None:
        super().__init__()
        self.separable = separable
        self.aspp = aspp if aspp is not None else ASPP(in_channels, atrous_rates, channels)
        self.reduce = nn.Sequential(*conv_bn_relu(low_level_channels, low_level_reduced))
        self.fuse = nn.Sequential(*self.fuse_layers(channels + low_level_reduced, channels))
        self.cls = classifier_conv(channels, num_classes)

    def conv3x3(self, in_channels: int, out_channels: int) -> list[nn.Module]:
        """The layers of one of the decoder's 3x3 convs (separable where the head is)."""
        if self.separable:
            return separable_conv_bn_relu(in_channels, out_channels, 3, 1)
        return conv_bn_relu(in_channels, out_channels, 3)

    def fuse_layers(self, in_channels: int, channels: int) -> list[nn.Module]:
        """The two 3x3 convs on the concatenated features."""
        return self.conv3x3(in_channels, channels) + self.conv3x3(channels, channels)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low_level = self.reduce(features["low_level"])
        x = self.aspp(features["out"])
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.cls(self.fuse(torch.cat([x, low_level], dim=1)))
