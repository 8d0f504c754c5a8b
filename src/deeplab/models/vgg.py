"""VGG-16 for DeepLab v1 LargeFOV and v2 VGG ASPP (Chen et al. 2015 Sec. 3.1, 2017 Sec. 4.1).

State-dict keys are torchvision's ``vgg16`` ``features.N`` keys (convs at 0, 2, 5, 7, 10, 12, 14,
17, 19, 21, 24, 26, 28), so ImageNet weights load as is (its ``classifier.*`` fully connected layers
are skipped; DeepLab's fc6/fc7 are convs in the head). The max-pools are 3x3 with padding 1 as in
the DeepLab releases, so an H x W input gives ceil(H/os) x ceil(W/os). At output stride 8 pool4 and
pool5 have stride 1 and conv5 is atrous with rate 2 (the "hole algorithm", v1 Sec. 3.1).
``pool5a=True`` appends DeepLab-LargeFOV's 3x3 stride-1 average pool (``pool5a`` of the released
v1 model definition, Caffe's AVE pooling with padding 1, which divides by 9 at the borders too) as
``features.31``; it has no weights, so the keys stay torchvision's. The Caffe releases' pools round
up (``variants.caffe_pools``).
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models._utils import AtrousPlan, init_weights

# (convs, channels) per stage; each stage ends with a max-pool
STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class VGG16(nn.Module):
    """Atrous VGG-16 conv1_1..pool5; ``forward`` returns {"out": pool5 features (512 channels)}."""

    pretrained_ignore = ("classifier.",)

    def __init__(self, output_stride: int = 8, pool5a: bool = False) -> None:
        super().__init__()
        plan = AtrousPlan(output_stride)
        self.output_stride = output_stride
        layers: list[nn.Module] = []
        self.conv_rates: list[int] = []
        self.pool_strides: list[int] = []
        in_channels = 3
        for convs, channels in STAGES:
            rate = plan.rate
            for _ in range(convs):
                layers += [nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True)]
                self.conv_rates.append(rate)
                in_channels = channels
            stride, _ = plan.step(2)
            self.pool_strides.append(stride)
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        if pool5a:  # DeepLab-LargeFOV's 3x3 stride-1 average pool between pool5 and fc6
            layers.append(nn.AvgPool2d(3, 1, padding=1, count_include_pad=True))
        self.features = nn.Sequential(*layers)
        self.out_channels = 512
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.features(x)}
