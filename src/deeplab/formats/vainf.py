"""VainF/DeepLabV3Plus-Pytorch training checkpoints (``{"model_state": ...}``) of its ResNet models:
torchvision ResNet backbones (its dilation), ASPP at 6/12/18 at output stride 16 (its default; pass
output_stride=8 to load_model for models trained at 8); v3+ with one 3x3 fuse conv and
[low-level, ASPP] concatenation order."""

from __future__ import annotations

import os

import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, rename, resnet_config, resnet_depth

SIGNATURE = ("model_state",)


def matches(obj: dict) -> bool:
    return isinstance(obj.get("model_state"), dict)


def recognise(obj: dict, path: str | os.PathLike) -> Recognised:
    state: dict[str, torch.Tensor] = obj["model_state"]
    if any(k.startswith("backbone.high_level_features.") for k in state):
        raise CheckpointError(f"{path}: a VainF MobileNetV2 checkpoint; only its ResNet models load so far")
    if "classifier.classifier.0.convs.0.0.weight" in state:  # deeplabv3: classifier.classifier = DeepLabHead
        renamed = rename(state, {"classifier.classifier.": "classifier."})
        classes = int(state["classifier.classifier.4.weight"].shape[0])
        arch, extra = "deeplabv3-resnet{}", {}
    elif "classifier.aspp.convs.0.0.weight" in state and "classifier.project.0.weight" in state:
        names = {"classifier.project.": "classifier.reduce.", "classifier.classifier.3.": "classifier.cls."}
        renamed = rename(state, names | {"classifier.classifier.": "classifier.fuse."})
        classes = int(state["classifier.classifier.3.weight"].shape[0])
        arch, extra = "deeplabv3plus-resnet{}", {"fuse_convs": 1, "low_level_first": True}
    else:
        keys = ", ".join(list(state)[:5])
        raise CheckpointError(f"{path}: a VainF checkpoint ('model_state') of an unknown model, first keys: {keys}")
    depth = resnet_depth(renamed, path, "VainF checkpoint")
    config = resnet_config(classes, 16, (6, 12, 18), torchvision_dilation=True, **extra)
    return Recognised("VainF/DeepLabV3Plus-Pytorch checkpoint", arch.format(depth), config, renamed, {})
