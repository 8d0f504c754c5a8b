"""kazuto1011/deeplab-pytorch: the authors' Caffe DeepLab v2 (ResNet-101, ASPP-L) converted to PyTorch,
and its DeepLab "v1" container (ResNet-101 + one 1x1 conv, the COCO initialisation).

Keys ``[base.]layerN.blockM.{reduce,conv3x3,increase,shortcut}.{conv,bn}``, ``layer1.conv1.{conv,bn}``
(the stem), ``aspp.cK`` (v2: 3x3 convs summed) or ``fc`` (v1). Its MSRA/Caffe ResNet puts a
stage's stride on the 1x1 reduce conv and rounds the stem's max-pool up (options of our ResNet),
dilates layer3/layer4 (ours) at 2/4 in every unit (output stride 8), and takes BGR images on the
0-255 scale minus the mean (104.008, 116.669, 122.675) with no std. We keep RGB input everywhere:
conv1's input channels are reordered to RGB, and the mean and std (1/255) go into the metadata.
Its network returns logits at 1/8 of the input, which its code upsamples bilinearly
(align_corners=False) to the image: ours returns those full-resolution logits.
"""

from __future__ import annotations

import os
import re

import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, resnet_config

SIGNATURE = ("base.layer1.conv1.conv.weight", "base.layer5.block1.reduce.conv.weight", "base.aspp.c0.weight")
BGR_MEAN = (104.008, 116.669, 122.675)  # on the 0-255 scale, of the Caffe release
UNIT = {"reduce": "1", "conv3x3": "2", "increase": "3"}
KEY = re.compile(r"layer(\d)\.block(\d+)\.(reduce|conv3x3|increase|shortcut)\.(conv|bn)\.(.+)")


def matches(obj: dict) -> bool:
    return any(str(k).removeprefix("base.") == "layer1.conv1.conv.weight" for k in obj)


def our_key(key: str) -> str:
    """Our key of one of kazuto's (without the MSC wrapper's ``base.``)."""
    key = key.removeprefix("base.")
    for old, new in (("layer1.conv1.conv.", "backbone.conv1."), ("layer1.conv1.bn.", "backbone.bn1.")):
        if key.startswith(old):
            return new + key[len(old) :]
    unit = KEY.fullmatch(key)
    if unit:
        stage, block, part, kind, rest = unit.groups()
        if part == "shortcut":
            name = f"downsample.{0 if kind == 'conv' else 1}"
        else:
            name = f"{kind}{UNIT[part]}"
        return f"backbone.layer{int(stage) - 1}.{int(block) - 1}.{name}.{rest}"
    if key.startswith("aspp.c"):
        index, rest = key[len("aspp.c") :].split(".", 1)
        return f"classifier.branches.{index}.{rest}"
    if key.startswith("fc."):
        return "classifier." + key[len("fc.") :]
    return key


def recognise(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Recognised:
    renamed = {our_key(k): v for k, v in state.items()}
    renamed["backbone.conv1.weight"] = renamed["backbone.conv1.weight"][:, [2, 1, 0]].contiguous()  # BGR -> RGB
    units = {k.split(".")[2] for k in renamed if k.startswith("backbone.layer3.")}
    branches = sorted({k.split(".")[2] for k in renamed if k.startswith("classifier.branches.")})
    if len(units) != 23:
        raise CheckpointError(f"{path}: kazuto1011 DeepLab with {len(units)} layer4 blocks (its ResNet-101 has 23)")
    caffe = {"stride_in_1x1": True, "stem_ceil_mode": True}
    if branches:
        if len(branches) != 4:
            raise CheckpointError(f"{path}: kazuto1011 DeepLab v2 with {len(branches)} ASPP branches (ASPP-L has 4)")
        classes = int(renamed["classifier.branches.0.weight"].shape[0])
        arch, config = "deeplabv2-resnet101", resnet_config(classes, 8, (6, 12, 18, 24), **caffe)
        kind = "kazuto1011/deeplab-pytorch DeepLab v2 (Caffe ResNet, ASPP-L)"
    elif "classifier.weight" in renamed:
        classes = int(renamed["classifier.weight"].shape[0])
        config = resnet_config(classes, 8, (), extra_blocks=0, **caffe)
        del config["atrous_rates"]
        arch, kind = "deeplabv3-resnet101-cascade", "kazuto1011/deeplab-pytorch DeepLab v1 (Caffe ResNet + 1x1)"
    else:
        raise CheckpointError(f"{path}: kazuto1011 DeepLab without aspp.c0 or fc weights")
    fields = {"mean": tuple(m / 255 for m in reversed(BGR_MEAN)), "std": (1 / 255,) * 3}
    return Recognised(kind + ", BGR input reordered to RGB", arch, config, renamed, fields)
