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
