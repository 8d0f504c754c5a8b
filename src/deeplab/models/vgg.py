"""VGG-16 for DeepLab v1 LargeFOV and v2 VGG ASPP (Chen et al. 2015 Sec. 3.1, 2017 Sec. 4.1).

State-dict keys are torchvision's ``vgg16`` ``features.N`` keys (convs at 0, 2, 5, 7, 10, 12, 14,
17, 19, 21, 24, 26, 28), so ImageNet weights load as is (its ``classifier.*`` fully connected layers
are skipped; DeepLab's fc6/fc7 are convs in the head). The max-pools are 3x3 with padding 1 as in
the DeepLab releases, so an H x W input gives ceil(H/os) x ceil(W/os). At output stride 8 pool4 and
pool5 have stride 1 and conv5 is atrous with rate 2 (the "hole algorithm", v1 Sec. 3.1).
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models.resnet import check_output_stride

# (convs, channels) per stage; each stage ends with a max-pool
STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class VGG16(nn.Module):
    """Atrous VGG-16 conv1_1..pool5; ``forward`` returns {"out": pool5 features (512 channels)}."""

    pretrained_ignore = ("classifier.",)

    def __init__(self, output_stride: int = 8) -> None:
        super().__init__()
        check_output_stride(output_stride)
        self.output_stride = output_stride
        layers: list[nn.Module] = []
        self.conv_rates: list[int] = []
        self.pool_strides: list[int] = []
        in_channels, current_stride, rate = 3, 1, 1
        for convs, channels in STAGES:
            for _ in range(convs):
                layers += [nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate), nn.ReLU(inplace=True)]
                self.conv_rates.append(rate)
                in_channels = channels
            stride = 2
            if current_stride * 2 > output_stride:
                stride, rate = 1, rate * 2
            else:
                current_stride *= 2
            self.pool_strides.append(stride)
            layers.append(nn.MaxPool2d(3, stride, padding=1))
        self.features = nn.Sequential(*layers)
        self.out_channels = 512
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.features(x)}
