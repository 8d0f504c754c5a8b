"""The DeepLab v3+ decoder (Chen et al. 2018, Sec. 3.1, Fig. 2): ASPP features refined with low-level ones.

State-dict keys, relative to ``model.classifier``: ``aspp.*`` (as ``heads.ASPP``), ``reduce.{0,1}``
(1x1 conv + BN to 48 channels on the stride-4 features), ``fuse.{0,1,3,4}`` (two 3x3 convs + BN),
``cls`` (1x1 to classes). With ``separable=True`` (v3+ Sec. 3.2, used by the MobileNetV2 preset) each
3x3 conv is a depthwise 3x3 + BN + ReLU and a pointwise 1x1 + BN + ReLU: ``fuse.{0,1,3,4,6,7,9,10}``.
With ``separable_bn=False`` a separable conv is ``N.0.{0,1}`` (depthwise, pointwise) + ``N.1`` (BN).
With ``aspp_conv=True``: ``aspp_conv.*``, one more 3x3 conv + BN after ASPP (as ``fuse``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.heads import ASPP, classifier_conv, conv_bn_relu, separable_conv_bn_relu


class DeepLabV3PlusHead(nn.Module):
    """ASPP at output stride, upsampled to the low-level features, concat with their 48-channel
    reduction, two 3x3 convs, 1x1 to classes (logits at stride 4).

    ``aspp`` holds ASPP's variant options (see ``heads.ASPP``). Variants of released models, all off
    by default:
    - VainF/DeepLabV3Plus-Pytorch: ``fuse_convs=1`` (one 3x3 conv after the concatenation) and
      ``low_level_first=True`` (concatenate [low-level, ASPP]);
    - segmentation_models_pytorch: separable ASPP branches, ``aspp_conv=True`` (a separable 3x3 conv after ASPP), ``separable_bn=False`` (no BN between
      depthwise and pointwise), ``fuse_convs=1`` and ``align_corners=True`` for the upsampling;
    - mmsegmentation: ASPP without projection and with the pooling branch first, ``aspp_conv=True``
      (a separable 3x3 conv on the concatenated branches), 512 channels.
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
        fuse_convs: int = 2,
        low_level_first: bool = False,
        aspp_conv: bool = False,
        separable_bn: bool = True,
        align_corners: bool = False,
        aspp: dict[str, bool] | None = None,
    ) -> None:
        super().__init__()
        if fuse_convs not in (1, 2):
            raise ValueError(f"fuse_convs must be 1 or 2, got {fuse_convs!r}")
        self.low_level_first, self.align_corners = low_level_first, align_corners
        self.aspp = ASPP(in_channels, atrous_rates, channels, **(aspp or {}))

        def block(cin: int, cout: int) -> list[nn.Module]:
            return separable_conv_bn_relu(cin, cout, 3, 1, separable_bn) if separable else conv_bn_relu(cin, cout, 3)

        self.aspp_conv = nn.Sequential(*block(self.aspp.out_channels, channels)) if aspp_conv else None
        self.reduce = nn.Sequential(*conv_bn_relu(low_level_channels, low_level_reduced))
        layers = block(channels + low_level_reduced, channels)
        if fuse_convs == 2:
            layers += block(channels, channels)
        self.fuse = nn.Sequential(*layers)
        self.cls = classifier_conv(channels, num_classes)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low_level = self.reduce(features["low_level"])
        x = self.aspp(features["out"])
        if self.aspp_conv is not None:
            x = self.aspp_conv(x)
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        parts = [low_level, x] if self.low_level_first else [x, low_level]
        return self.cls(self.fuse(torch.cat(parts, dim=1)))
