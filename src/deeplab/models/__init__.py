"""DeepLab networks and everything that builds them.

- ``resnet``, ``vgg``, ``mobilenet``: atrous backbones; ``_utils``: their shared stride-to-rate rule
  and weight init.
- ``heads`` (LargeFOV, v2 ASPP, v3 ASPP, FCN aux), ``decoder`` (v3+), ``deeplab`` (backbone + head),
  ``multiscale`` (v2's MSC wrapper).
- ``presets``: the papers' configurations, the table of backbones and heads (one entry each) and
  ``build_model``; ``variants``: the peers' versions of the paper modules; ``meta``: ``ModelMeta``;
  ``pretrained``: ImageNet backbone weights; ``loading``: ``load_model`` / ``save_model``;
  ``named``: the weights shipped in ``deeplab/assets``, by name.
Imports flow down to ``deeplab.formats`` (checkpoint layouts) and ``deeplab.checkpoint``, never up.
"""

from deeplab.models._utils import check_output_stride
from deeplab.models.decoder import DeepLabV3PlusHead
from deeplab.models.deeplab import DeepLab, unwrap
from deeplab.models.heads import ASPP, DeepLabV3Head, FCNHead, aspp_v2_head, classifier_conv, largefov_head
from deeplab.models.loading import describe_checkpoint, load_model, load_state, load_weights, save_model
from deeplab.models.meta import ModelMeta, default_meta
from deeplab.models.mobilenet import MobileNetV2
from deeplab.models.multiscale import MultiScale
from deeplab.models.named import DEFAULT_WEIGHTS, NAMED_WEIGHTS, named_weights_table
from deeplab.models.presets import PRESETS, build_model, complexity, presets_table, resolve_config
from deeplab.models.pretrained import load_backbone_weights
from deeplab.models.resnet import ResNet
from deeplab.models.vgg import VGG16

__all__ = [
    "ASPP",
    "DEFAULT_WEIGHTS",
    "NAMED_WEIGHTS",
    "PRESETS",
    "VGG16",
    "DeepLab",
    "DeepLabV3Head",
    "DeepLabV3PlusHead",
    "FCNHead",
    "MobileNetV2",
    "ModelMeta",
    "MultiScale",
    "ResNet",
    "aspp_v2_head",
    "build_model",
    "check_output_stride",
    "classifier_conv",
    "complexity",
    "default_meta",
    "describe_checkpoint",
    "largefov_head",
    "load_backbone_weights",
    "load_model",
    "load_state",
    "load_weights",
    "named_weights_table",
    "presets_table",
    "resolve_config",
    "save_model",
    "unwrap",
]
