"""segmentation_models_pytorch DeepLabV3 / DeepLabV3Plus state dicts with a ResNet-50/101 encoder.

smp dilates every unit of a stage at the stage's rate (our default, not torchvision's), uses ASPP
rates 12/24/36 and align_corners=True upsampling; output stride 8 (v3) or 16 (v3+) are its defaults
(the file does not say: pass output_stride= and atrous_rates= to load_model for other builds).
Its v3+ decoder: separable ASPP branches and convs without BN between depthwise and pointwise, one
more separable conv after ASPP, one fuse conv: options of our decoder (decoder.DeepLabV3PlusHead).
"""

from __future__ import annotations

import os

import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, rename, resnet_config, resnet_depth

SIGNATURE = ("encoder.conv1.weight", "encoder.layer4.0.conv1.weight", "segmentation_head.0.weight")

V3 = {  # smp DeepLabV3 -> ours (torchvision's DeepLabHead layout)
    "encoder.": "backbone.",
    "decoder.aspp.": "classifier.0.",
    "decoder.conv.": "classifier.1.",
    "decoder.bn.": "classifier.2.",
    "decoder.0.": "classifier.0.",  # smp < 0.4 kept the decoder as a Sequential
    "decoder.1.": "classifier.1.",
    "decoder.2.": "classifier.2.",
    "segmentation_head.0.": "classifier.4.",
}
V3PLUS = {  # smp DeepLabV3Plus -> ours (decoder.DeepLabV3PlusHead)
    "encoder.": "backbone.",
    "decoder.aspp.0.": "classifier.aspp.",
    "decoder.aspp.1.": "classifier.aspp_conv.0.",
    "decoder.aspp.2.": "classifier.aspp_conv.1.",
    "decoder.block1.": "classifier.reduce.",
    "decoder.block2.": "classifier.fuse.",
    "segmentation_head.0.": "classifier.cls.",
}


def matches(obj: dict) -> bool:
    return "segmentation_head.0.weight" in obj and any(str(k).startswith("encoder.") for k in obj)


def recognise(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Recognised:
    if "encoder.layer3.0.conv3.weight" not in state:
        first = next((k for k in state if k.startswith("encoder.")), "")
        raise CheckpointError(
            f"{path}: a segmentation_models_pytorch model whose encoder is not ResNet-50/101 "
            f"(first encoder key {first}); only those encoders load"
        )
    if any(k.startswith("classification_head.") for k in state):
        raise CheckpointError(f"{path}: a segmentation_models_pytorch model with aux_params (classification head)")
    plus = "decoder.block1.0.weight" in state
    renamed = rename(state, V3PLUS if plus else V3)
    depth = resnet_depth(renamed, path, "segmentation_models_pytorch model")
    classes = int(state["segmentation_head.0.weight"].shape[0])
    config = resnet_config(classes, 16 if plus else 8, (12, 24, 36), align_corners=True)
    if "classifier.aspp.convs.1.0.0.weight" in renamed or "classifier.0.convs.1.0.0.weight" in renamed:
        config |= {"aspp_separable": True, "separable_bn": False}
    if plus:
        config |= {"separable": True, "separable_bn": False, "aspp_conv": True, "fuse_convs": 1}
    name = "DeepLabV3Plus" if plus else "DeepLabV3"
    arch = f"deeplabv3{'plus' if plus else ''}-resnet{depth}"
    return Recognised(f"segmentation_models_pytorch {name}", arch, config, renamed, {})
