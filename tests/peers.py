"""Reimplementations of peers' DeepLab models, built from torchvision parts, for parity tests.

VainF/DeepLabV3Plus-Pytorch (network/_deeplab.py, network/modeling.py): an IntermediateLayerGetter
over torchvision's ResNet with replace_stride_with_dilation, heads whose keys are `classifier.*`,
logits upsampled bilinearly (align_corners=False) to the input size.
"""

import torch
import torch.nn.functional as F
from torch import nn


class VainFV3Head(nn.Module):
    """VainF's DeepLabHead: `classifier` = Sequential(ASPP, 3x3 conv, BN, ReLU, 1x1 to classes)."""

    def __init__(self, tv, num_classes: int, rates=(6, 12, 18)) -> None:
        super().__init__()
        self.classifier = tv.models.segmentation.deeplabv3.DeepLabHead(2048, num_classes, list(rates))

    def forward(self, feature):
        return self.classifier(feature["out"])


class VainFV3PlusHead(nn.Module):
    """VainF's DeepLabHeadV3Plus: 48-channel `project`, `aspp`, one 3x3 conv; [low-level, ASPP] order."""

    def __init__(self, tv, num_classes: int, rates=(6, 12, 18)) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.Conv2d(256, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True))
        self.aspp = tv.models.segmentation.deeplabv3.ASPP(2048, list(rates))
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

    def __init__(self, tv, kind: str, depth: int, num_classes: int, output_stride: int = 16) -> None:
        super().__init__()
        dilation = [False, True, True] if output_stride == 8 else [False, False, True]
        rates = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
        resnet = getattr(tv.models, f"resnet{depth}")(weights=None, replace_stride_with_dilation=dilation)
        layers = {"layer4": "out", "layer1": "low_level"} if kind == "v3plus" else {"layer4": "out"}
        self.backbone = tv.models._utils.IntermediateLayerGetter(resnet, return_layers=layers)
        head = VainFV3PlusHead if kind == "v3plus" else VainFV3Head
        self.classifier = head(tv, num_classes, rates)

    def forward(self, x):
        out = self.classifier(self.backbone(x))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


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
