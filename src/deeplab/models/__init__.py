"""DeepLab networks: atrous backbones (ResNet, VGG-16, MobileNetV2), heads, the v3+ decoder, MSC."""

from deeplab.models.decoder import DeepLabV3PlusHead
from deeplab.models.deeplab import DeepLab
from deeplab.models.heads import ASPP, DeepLabV3Head, FCNHead, aspp_v2_head, classifier_conv, largefov_head
from deeplab.models.mobilenet import MobileNetV2
from deeplab.models.multiscale import MultiScale, MultiScaleOutput
from deeplab.models.resnet import ResNet, check_output_stride
from deeplab.models.vgg import VGG16

__all__ = [
    "ASPP", "DeepLab", "DeepLabV3Head", "DeepLabV3PlusHead", "FCNHead", "MobileNetV2", "MultiScale",
    "MultiScaleOutput", "ResNet", "VGG16", "aspp_v2_head", "check_output_stride", "classifier_conv",
    "largefov_head",
]  # fmt: skip
