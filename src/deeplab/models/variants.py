"""Other libraries' versions of the paper's modules: what their released weights need to run unchanged.

The paper's modules (resnet, mobilenet, vgg, heads, decoder) read like the papers; each difference of
a peer's network lives here, under the build option that a checkpoint format (``deeplab.formats``)
stores in its config. State-dict keys stay the paper modules' keys.

| build option | whose | what differs |
|---|---|---|
| ``torchvision_dilation`` | torchvision, VainF, mmseg | a dilated stage's first unit keeps the previous stage's rate |
| ``stride_in_1x1``, ``stem_ceil_mode`` | Caffe (v2 release), kazuto1011 | stride on the 1x1 reduce conv; the stem's pool rounds up |
| ``deep_stem`` | mmsegmentation ResNetV1c | three 3x3 stem convs (keys ``stem.{0,1,3,4,6,7}``) |
| ``pad_block_input`` | VainF MobileNetV2 | each block pads its input instead of its depthwise conv |
| ``pool_ceil_mode`` | Caffe VGG-16 (v1/v2 releases) | max-pools round up |
| ``separable_bn=False`` | segmentation_models_pytorch | no BN between depthwise and pointwise |
| ``aspp_projection=False``, ``pooling_first`` | mmsegmentation | ASPP without 1x1 projection, pooling branch first |
| ``fuse_convs``, ``low_level_first``, ``aspp_conv``, ``align_corners`` | VainF, smp, mmseg | v3+ decoder layout |
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models._utils import init_weights
from deeplab.models.decoder import DeepLabV3PlusHead
from deeplab.models.heads import ASPP
from deeplab.models.mobilenet import InvertedResidual, MobileNetV2
from deeplab.models.resnet import ResNet
from deeplab.models.vgg import VGG16

# -- ResNet ---------------------------------------------------------------------------------------


def torchvision_dilation(net: ResNet) -> None:
    """torchvision's rates: the first unit of a dilated stage keeps the previous stage's rate."""
    names = [f"layer{i + 1}" for i in range(net.num_stages)]
    for index in range(1, net.num_stages):
        grid = net.unit_rates[names[index]][0] // net.stage_rates[index]
        rate = net.stage_rates[index - 1] * grid
        net.unit_rates[names[index]][0] = rate
        conv = getattr(net, names[index])[0].conv2
        conv.dilation, conv.padding = (rate, rate), (rate, rate)


def stride_in_1x1(net: ResNet) -> None:
    """The MSRA/Caffe ResNet: a stage's stride on its first unit's 1x1 reduce conv, not the 3x3."""
    for index in range(net.num_stages):
        unit = getattr(net, f"layer{index + 1}")[0]
        unit.conv1.stride, unit.conv2.stride = unit.conv2.stride, (1, 1)


def stem_ceil_mode(net: ResNet) -> None:
    """The MSRA/Caffe ResNet's stem max-pool rounds its output size up."""
    net.maxpool.ceil_mode = True


class DeepStemResNet(ResNet):
    """mmsegmentation's ResNetV1c: three 3x3 convs (32, 32, 64 channels) replace the 7x7 stem conv."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.conv1, self.bn1
        layers: list[nn.Module] = []
        for cin, cout, stride in ((3, 32, 2), (32, 32, 1), (32, 64, 1)):
            layers += [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.stem = nn.Sequential(*layers)
        init_weights(self.stem)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.stem(x))


# -- MobileNetV2 ----------------------------------------------------------------------------------


class PadInputResidual(InvertedResidual):
    """VainF's inverted residual: its input zero-padded by the depthwise rate, the depthwise conv unpadded."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, rate: int = 1, residual: bool = False):
        super().__init__(inp, oup, stride, expand_ratio, rate, residual)
        depthwise = cast(nn.Conv2d, cast(nn.Sequential, self.conv[-3])[0])  # of [expand?, depthwise, project, bn]
        depthwise.padding = (0, 0)
        self.input_padding = (rate,) * 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.pad(x, self.input_padding))
        return x + y if self.use_res_connect else y


def vainf_mobilenetv2(output_stride: int, width_mult: float) -> MobileNetV2:
    """VainF/DeepLabV3Plus-Pytorch's MobileNetV2: inputs padded per block, the stem conv unpadded."""
    net = MobileNetV2(output_stride, width_mult, block=PadInputResidual)
    stem = cast(nn.Conv2d, cast(nn.Sequential, net.features[0])[0])
    stem.padding = (0, 0)
    return net


# -- VGG-16 ---------------------------------------------------------------------------------------


def caffe_pools(net: VGG16) -> None:
    """Caffe's max-pools round up (the releases' pools give H/2 + 1 on even sizes)."""
    for layer in net.features:
        if isinstance(layer, nn.MaxPool2d):
            layer.ceil_mode = True


# -- ASPP and the v3+ decoder ---------------------------------------------------------------------


def smp_separable_conv_bn_relu(in_channels: int, out_channels: int, rate: int = 1) -> list[nn.Module]:
    """segmentation_models_pytorch's separable conv: [Sequential(depthwise 3x3, pointwise 1x1), BN, ReLU]."""
    depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=rate, dilation=rate, groups=in_channels, bias=False)
    pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
    return [nn.Sequential(depthwise, pointwise), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class PeerASPP(ASPP):
    """ASPP as the peers built it: smp's separable convs (``separable_bn=False``), mmseg's
    concatenation without the 1x1 projection (``projection=False``: ``out_channels`` = branches x
    channels) and with the pooling branch first (``pooling_first``)."""

    def __init__(
        self,
        in_channels: int,
        atrous_rates: tuple[int, ...],
        out_channels: int = 256,
        image_pooling: bool = True,
        separable: bool = False,
        separable_bn: bool = True,
        projection: bool = True,
        pooling_first: bool = False,
    ) -> None:
        self.separable_bn = separable_bn  # read by atrous_branch during ASPP's construction
        super().__init__(in_channels, atrous_rates, out_channels, image_pooling, separable)
        self.pooling_first = pooling_first and image_pooling
        if not projection:  # no parameters, so the state-dict keys are the same
            self.project = nn.Identity()
            self.out_channels = len(self.convs) * out_channels

    def atrous_branch(self, in_channels: int, out_channels: int, rate: int, separable: bool) -> list[nn.Module]:
        if separable and not self.separable_bn:
            return smp_separable_conv_bn_relu(in_channels, out_channels, rate)
        return super().atrous_branch(in_channels, out_channels, rate, separable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.convs]
        if self.pooling_first:
            outs.insert(0, outs.pop())
        return self.project(torch.cat(outs, dim=1))


class PeerV3PlusHead(DeepLabV3PlusHead):
    """The v3+ decoder as the peers built it (state-dict keys as ``DeepLabV3PlusHead``, plus ``aspp_conv.*``):

    - VainF: ``fuse_convs=1`` (one 3x3 conv after the concatenation), ``low_level_first=True``;
    - segmentation_models_pytorch: ``aspp_conv=True`` (a separable 3x3 conv after ASPP),
      ``separable_bn=False``, ``fuse_convs=1``, ``align_corners=True`` for the upsampling;
    - mmsegmentation: ``aspp_conv=True`` on the unprojected ASPP concatenation, 512 channels.
    """

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        num_classes: int,
        atrous_rates: tuple[int, ...],
        channels: int = 256,
        separable: bool = False,
        aspp: ASPP | None = None,
        fuse_convs: int = 2,
        low_level_first: bool = False,
        aspp_conv: bool = False,
        separable_bn: bool = True,
        align_corners: bool = False,
    ) -> None:
        if fuse_convs not in (1, 2):
            raise ValueError(f"fuse_convs must be 1 or 2, got {fuse_convs!r}")
        self.fuse_convs, self.separable_bn = fuse_convs, separable_bn  # read while the layers are built
        super().__init__(in_channels, low_level_channels, num_classes, atrous_rates, channels, 48, separable, aspp)
        self.low_level_first, self.align_corners = low_level_first, align_corners
        self.aspp_conv = nn.Sequential(*self.conv3x3(self.aspp.out_channels, channels)) if aspp_conv else None

    def conv3x3(self, in_channels: int, out_channels: int) -> list[nn.Module]:
        if self.separable and not self.separable_bn:
            return smp_separable_conv_bn_relu(in_channels, out_channels)
        return super().conv3x3(in_channels, out_channels)

    def fuse_layers(self, in_channels: int, channels: int) -> list[nn.Module]:
        layers = self.conv3x3(in_channels, channels)
        return layers + self.conv3x3(channels, channels) if self.fuse_convs == 2 else layers

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        low_level = self.reduce(features["low_level"])
        x = self.aspp(features["out"])
        if self.aspp_conv is not None:
            x = self.aspp_conv(x)
        x = F.interpolate(x, size=low_level.shape[-2:], mode="bilinear", align_corners=self.align_corners)
        parts = [low_level, x] if self.low_level_first else [x, low_level]
        return self.cls(self.fuse(torch.cat(parts, dim=1)))


__all__ = [
    "DeepStemResNet",
    "PadInputResidual",
    "PeerASPP",
    "PeerV3PlusHead",
    "caffe_pools",
    "smp_separable_conv_bn_relu",
    "stem_ceil_mode",
    "stride_in_1x1",
    "torchvision_dilation",
    "vainf_mobilenetv2",
]
