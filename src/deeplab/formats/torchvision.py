"""torchvision's ``deeplabv3_resnet50/101`` state dicts: keys as ours, output stride 8, rates
12/24/36, no multi-grid, torchvision's dilation of a stage's first unit, optional aux head."""

from __future__ import annotations

import os

import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, resnet_config, resnet_depth

SIGNATURE = ("backbone.layer4.0.conv1.weight", "classifier.0.convs.0.0.weight", "classifier.4.weight")


def matches(obj: dict) -> bool:
    return "classifier.0.convs.0.0.weight" in obj and "backbone.layer4.0.conv1.weight" in obj


def recognise(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Recognised:
    depth = resnet_depth(state, path, "torchvision DeepLabV3 state dict")
    if "classifier.4.weight" not in state:
        raise CheckpointError(f"{path}: torchvision DeepLabV3 state dict without classifier.4.weight")
    aux = any(k.startswith("aux_classifier.") for k in state)
    config = resnet_config(
        int(state["classifier.4.weight"].shape[0]), 8, (12, 24, 36), aux=aux, torchvision_dilation=True
    )
    return Recognised("torchvision DeepLabV3 state dict", f"deeplabv3-resnet{depth}", config, state, {})
