"""VainF/DeepLabV3Plus-Pytorch training checkpoints (``{"model_state": ...}``): ASPP at 6/12/18 at
output stride 16 (its default; pass output_stride=8 to load_model for models trained at 8); v3+ with
one 3x3 fuse conv and [low-level, ASPP] concatenation order. ResNet models: torchvision backbones (its
dilation). MobileNetV2 models (``backbone.low_level_features`` = our ``features.0-3``,
``high_level_features`` = ``features.4-17``): its padding (``pad_block_input``) and 256-channel heads."""

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
    mobilenet = any(k.startswith("backbone.high_level_features.") for k in state)
    if mobilenet:
        state = {_mobilenet_key(k): v for k, v in state.items()}
    if "classifier.classifier.0.convs.0.0.weight" in state:  # deeplabv3: classifier.classifier = DeepLabHead
        renamed = rename(state, {"classifier.classifier.": "classifier."})
        classes = int(state["classifier.classifier.4.weight"].shape[0])
        arch, extra = "deeplabv3-{}", {}
    elif "classifier.aspp.convs.0.0.weight" in state and "classifier.project.0.weight" in state:
        names = {"classifier.project.": "classifier.reduce.", "classifier.classifier.3.": "classifier.cls."}
        renamed = rename(state, names | {"classifier.classifier.": "classifier.fuse."})
        classes = int(state["classifier.classifier.3.weight"].shape[0])
        arch, extra = "deeplabv3plus-{}", {"fuse_convs": 1, "low_level_first": True}
    else:
        keys = ", ".join(list(state)[:5])
        raise CheckpointError(f"{path}: a VainF checkpoint ('model_state') of an unknown model, first keys: {keys}")
    kind = "VainF/DeepLabV3Plus-Pytorch checkpoint"
    if mobilenet:
        config = {"num_classes": classes, "output_stride": 16, "atrous_rates": (6, 12, 18), "width_mult": 1.0}
        config |= {"pad_block_input": True, "head_channels": 256, **extra}
        if "fuse_convs" in extra:
            config["separable"] = False
        return Recognised(kind, arch.format("mobilenetv2"), config, renamed, {})
    depth = resnet_depth(renamed, path, "VainF checkpoint")
    config = resnet_config(classes, 16, (6, 12, 18), torchvision_dilation=True, **extra)
    return Recognised(kind, arch.format(f"resnet{depth}"), config, renamed, {})


def _mobilenet_key(key: str) -> str:
    """VainF's MobileNetV2 backbone key -> ours (features.N)."""
    for name, offset in (("backbone.low_level_features.", 0), ("backbone.high_level_features.", 4)):
        if key.startswith(name):
            index, rest = key[len(name) :].split(".", 1)
            return f"backbone.features.{int(index) + offset}.{rest}"
    return key
