"""Reimplementations of peers' DeepLab models, built from torchvision parts, for parity tests.

Each is written from reading the peer's model code (named in its docstring), with the peer's own
state-dict key names, so that a state dict of random weights stands for a released checkpoint:
- VainF/DeepLabV3Plus-Pytorch (network/_deeplab.py, network/modeling.py, backbone/mobilenetv2.py);
- kazuto1011/deeplab-pytorch (libs/models/resnet.py, deeplabv2.py, msc.py): the authors' Caffe v2;
- mmsegmentation (decode_heads/aspp_head.py, sep_aspp_head.py, backbones/resnet.py: ResNetV1c).
"""

import torch
import torch.nn.functional as F
from torch import nn


class VainFV3Head(nn.Module):
    """VainF's DeepLabHead: `classifier` = Sequential(ASPP, 3x3 conv, BN, ReLU, 1x1 to classes)."""

    def __init__(self, tv, num_classes: int, rates=(6, 12, 18), channels=2048, low_channels=256) -> None:
        super().__init__()
        self.classifier = tv.models.segmentation.deeplabv3.DeepLabHead(channels, num_classes, list(rates))

    def forward(self, feature):
        return self.classifier(feature["out"])


class VainFV3PlusHead(nn.Module):
    """VainF's DeepLabHeadV3Plus: 48-channel `project`, `aspp`, one 3x3 conv; [low-level, ASPP] order."""

    def __init__(self, tv, num_classes: int, rates=(6, 12, 18), channels=2048, low_channels=256) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(True))
        self.aspp = tv.models.segmentation.deeplabv3.ASPP(channels, list(rates))
        self.classifier = nn.Sequential(
            nn.Conv2d(304, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, num_classes, 1),
        )

    def forward(self, feature):
        low = self.project(feature["low_level"])
        out = F.interpolate(self.aspp(feature["out"]), size=low.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([low, out], dim=1))


class VainFModel(nn.Module):
    """VainF's DeepLabV3 wrapper (also used for v3+): backbone features -> head -> input size."""

    def __init__(self, tv, kind: str, depth, num_classes: int, output_stride: int = 16) -> None:
        super().__init__()
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        head = VainFV3PlusHead if kind == "v3plus" else VainFV3Head
        if depth == "mobilenetv2":
            self.backbone = VainFMobileNetV2(output_stride)
            self.classifier = head(tv, num_classes, rates, 320, 24)
            return
        dilation = [False, True, True] if output_stride == 8 else [False, False, True]
        resnet = getattr(tv.models, f"resnet{depth}")(weights=None, replace_stride_with_dilation=dilation)
        layers = {"layer4": "out", "layer1": "low_level"} if kind == "v3plus" else {"layer4": "out"}
        self.backbone = tv.models._utils.IntermediateLayerGetter(resnet, return_layers=layers)
        self.classifier = head(tv, num_classes, rates)

    def forward(self, x):
        out = self.classifier(self.backbone(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def vainf_conv_bn_relu6(cin, cout, kernel=3, stride=1, dilation=1, groups=1):
    """VainF's ConvBNReLU: no padding in the conv itself."""
    conv = nn.Conv2d(cin, cout, kernel, stride, 0, dilation=dilation, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU6(inplace=True))


class VainFInvertedResidual(nn.Module):
    """VainF's block: the input is zero-padded by the dilation before the whole block (expansion too)."""

    def __init__(self, inp, oup, stride, dilation, expand_ratio) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        layers = [] if expand_ratio == 1 else [vainf_conv_bn_relu6(inp, hidden, 1)]
        layers += [
            vainf_conv_bn_relu6(hidden, hidden, 3, stride, dilation, hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.pad, self.residual = dilation, stride == 1 and inp == oup

    def forward(self, x):
        y = self.conv(F.pad(x, (self.pad,) * 4))
        return x + y if self.residual else y


class VainFMobileNetV2(nn.Module):
    """VainF's MobileNetV2 as its _segm_mobilenet uses it: `low_level_features` (features 0-3, with an
    unpadded stem conv) and `high_level_features` (features 4-17); first unit of a dilated stage keeps
    the previous dilation."""

    def __init__(self, output_stride=16) -> None:
        super().__init__()
        settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2))
        features = [vainf_conv_bn_relu6(3, 32, 3, 2)]
        current, dilation, cin = 2, 1, 32
        for t, c, n, s in (*settings, (6, 320, 1, 1)):
            previous = dilation
            if current == output_stride:
                stride, dilation = 1, dilation * s
            else:
                stride, current = s, current * s
            for i in range(n):
                features.append(
                    VainFInvertedResidual(cin, c, stride if i == 0 else 1, previous if i == 0 else dilation, t)
                )
                cin = c
        self.low_level_features = nn.Sequential(*features[:4])
        self.high_level_features = nn.Sequential(*features[4:])

    def forward(self, x):
        low = self.low_level_features(x)
        return {"low_level": low, "out": self.high_level_features(low)}


class KazutoConvBN(nn.Sequential):
    """kazuto1011's `_ConvBnReLU`: submodules `conv`, `bn` (and `relu`)."""

    def __init__(self, cin, cout, kernel, stride=1, dilation=1, relu=True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, dilation * (kernel // 2), dilation, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if relu:
            self.relu = nn.ReLU()


class KazutoBottleneck(nn.Module):
    """The MSRA/Caffe bottleneck: the stride sits on the 1x1 `reduce` conv and on the `shortcut`."""

    def __init__(self, cin, cout, stride, dilation, project) -> None:
        super().__init__()
        mid = cout // 4
        self.reduce = KazutoConvBN(cin, mid, 1, stride)
        self.conv3x3 = KazutoConvBN(mid, mid, 3, 1, dilation)
        self.increase = KazutoConvBN(mid, cout, 1, relu=False)
        self.shortcut = KazutoConvBN(cin, cout, 1, stride, relu=False) if project else nn.Identity()

    def forward(self, x):
        return F.relu(self.increase(self.conv3x3(self.reduce(x))) + self.shortcut(x))


def kazuto_input(rgb: torch.Tensor) -> torch.Tensor:
    """What its data loader feeds the network: BGR, 0-255, minus its mean, no std."""
    mean = torch.tensor([104.008, 116.669, 122.675]).view(1, 3, 1, 1)
    return rgb.flip(1) * 255 - mean


def our_input(rgb: torch.Tensor, meta) -> torch.Tensor:
    return (rgb - torch.tensor(meta.mean).view(1, 3, 1, 1)) / torch.tensor(meta.std).view(1, 3, 1, 1)


class KazutoDeepLabV2(nn.Module):
    """kazuto1011/deeplab-pytorch DeepLabV2 (libs/models/deeplabv2.py) inside its MSC wrapper (`base.`
    keys): stem with a ceil-mode max-pool, layer4/layer5 dilated 2/4 in every unit, ASPP-L of four
    3x3 convs summed (`aspp.cK`) or, for v1, one 1x1 `fc`; logits at 1/8, which its code upsamples."""

    def __init__(self, num_classes, blocks=(3, 4, 23, 3), v1=False) -> None:
        super().__init__()
        base = nn.Module()
        base.layer1 = nn.Sequential()
        base.layer1.add_module("conv1", KazutoConvBN(3, 64, 7, 2))
        base.layer1.conv1.conv.padding = (3, 3)
        base.layer1.add_module("pool", nn.MaxPool2d(3, 2, 1, ceil_mode=True))
        cin = 64
        for index, (n, cout, stride, dilation) in enumerate(
            zip(blocks, (256, 512, 1024, 2048), (1, 2, 1, 1), (1, 1, 2, 4)), start=2
        ):
            layer = nn.Sequential()
            for i in range(n):
                unit = KazutoBottleneck(cin if i == 0 else cout, cout, stride if i == 0 else 1, dilation, i == 0)
                layer.add_module(f"block{i + 1}", unit)
            setattr(base, f"layer{index}", layer)
            cin = cout
        if v1:
            base.fc = nn.Conv2d(2048, num_classes, 1)
        else:
            base.aspp = nn.Module()
            for i, rate in enumerate((6, 12, 18, 24)):
                base.aspp.add_module(f"c{i}", nn.Conv2d(2048, num_classes, 3, 1, rate, rate))
        self.base = base

    def forward(self, bgr_minus_mean):
        b = self.base
        x = bgr_minus_mean
        for index in range(1, 6):
            x = getattr(b, f"layer{index}")(x)
        if hasattr(b, "fc"):
            return b.fc(x)
        return sum(conv(x) for conv in b.aspp.children())


class MMConv(nn.Module):
    """mmcv's ConvModule with BN and ReLU: submodules `conv` (no bias) and `bn`."""

    def __init__(self, cin, cout, kernel, dilation=1, groups=1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, dilation * (kernel // 2), dilation, groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class MMSeparable(nn.Module):
    """mmcv's DepthwiseSeparableConvModule: `depthwise_conv` and `pointwise_conv`, each conv + BN + ReLU."""

    def __init__(self, cin, cout, dilation=1) -> None:
        super().__init__()
        self.depthwise_conv = MMConv(cin, cin, 3, dilation, groups=cin)
        self.pointwise_conv = MMConv(cin, cout, 1)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class MMSegHead(nn.Module):
    """mmseg's ASPPHead (v3) / DepthwiseSeparableASPPHead (v3+): image pool first in the concatenation,
    a 3x3 `bottleneck` on it (no 1x1 projection); v3+ adds `c1_bottleneck` and two `sep_bottleneck`s."""

    def __init__(self, plus, num_classes, channels=512, rates=(12, 24, 36)) -> None:
        super().__init__()
        self.plus = plus
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), MMConv(2048, channels, 1))
        branches = [MMConv(2048, channels, 1)]
        branches += [MMSeparable(2048, channels, r) if plus else MMConv(2048, channels, 3, r) for r in rates]
        self.aspp_modules = nn.ModuleList(branches)
        cat = (len(rates) + 2) * channels
        self.bottleneck = MMSeparable(cat, channels) if plus else MMConv(cat, channels, 3)
        if plus:
            self.c1_bottleneck = MMConv(256, 48, 1)
            self.sep_bottleneck = nn.Sequential(MMSeparable(channels + 48, channels), MMSeparable(channels, channels))
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)

    def forward(self, inputs):
        x = inputs[3]
        pool = F.interpolate(self.image_pool(x), size=x.shape[2:], mode="bilinear", align_corners=False)
        out = self.bottleneck(torch.cat([pool] + [m(x) for m in self.aspp_modules], dim=1))
        if self.plus:
            c1 = self.c1_bottleneck(inputs[0])
            out = F.interpolate(out, size=c1.shape[2:], mode="bilinear", align_corners=False)
            out = self.sep_bottleneck(torch.cat([out, c1], dim=1))
        return self.conv_seg(out)


class MMSegAuxHead(nn.Module):
    """mmseg's FCNHead as the auxiliary head on layer3 (one 3x3 conv, 256 channels)."""

    def __init__(self, num_classes) -> None:
        super().__init__()
        self.convs = nn.Sequential(MMConv(1024, 256, 3))
        self.conv_seg = nn.Conv2d(256, num_classes, 1)

    def forward(self, inputs):
        return self.conv_seg(self.convs(inputs[2]))


class MMSegDeepLab(nn.Module):
    """mmseg's EncoderDecoder with ResNetV1c-d8 (deep stem; torchvision's ResNet layers with its
    contract_dilation convention) and the heads above; logits resized to the input."""

    def __init__(self, tv, plus, depth, num_classes, aux=False) -> None:
        super().__init__()
        resnet = getattr(tv.models, f"resnet{depth}")(weights=None, replace_stride_with_dilation=[False, True, True])
        stem = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        stem += [nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
        stem += [nn.Conv2d(32, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
        self.backbone = nn.Module()
        self.backbone.stem = nn.Sequential(*stem)
        self.backbone.maxpool = nn.MaxPool2d(3, 2, 1)
        for name in ("layer1", "layer2", "layer3", "layer4"):
            setattr(self.backbone, name, getattr(resnet, name))
        self.decode_head = MMSegHead(plus, num_classes)
        self.auxiliary_head = MMSegAuxHead(num_classes) if aux else None

    def forward(self, x):
        b = self.backbone
        y = b.maxpool(b.stem(x))
        outs = []
        for name in ("layer1", "layer2", "layer3", "layer4"):
            y = getattr(b, name)(y)
            outs.append(y)
        logits = F.interpolate(self.decode_head(outs), size=x.shape[2:], mode="bilinear", align_corners=False)
        if self.auxiliary_head is None:
            return logits
        aux = F.interpolate(self.auxiliary_head(outs), size=x.shape[2:], mode="bilinear", align_corners=False)
        return {"out": logits, "aux": aux}
