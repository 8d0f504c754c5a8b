"""mmsegmentation DeepLabV3 (ASPPHead) and DeepLabV3+ (DepthwiseSeparableASPPHead) checkpoints on
ResNetV1c-50/101 (``{"meta": ..., "state_dict": ...}``; ``backbone.*``, ``decode_head.*``,
``auxiliary_head.*``).

ResNetV1c: a deep stem of three 3x3 convs (``deep_stem``), the stride on the 3x3 conv, dilated stages
whose first unit keeps half the rate (torchvision's convention, ``contract_dilation``). Its configs
``*-d8`` use output stride 8 with ASPP rates 12/24/36 (the default here); for ``*-d16-mg124`` pass
output_stride=16, multi_grid=(1, 2, 4), torchvision_dilation=False to load_model (the file does not
say). Its heads: 512 channels, the image-pooling branch first, no 1x1 projection (a 3x3
"bottleneck" conv on the concatenation, separable in v3+), separable convs with BN + ReLU after
the depthwise part. Input: RGB with ImageNet mean/std, as ours. Class names and palette come from
the file's ``meta`` where it has them.
"""

from __future__ import annotations

import os
import re

import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, resnet_config, resnet_depth

SIGNATURE = ("state_dict", "meta", "backbone.stem.0.weight", "decode_head.conv_seg.weight")


def matches(obj: dict) -> bool:
    state = obj.get("state_dict", obj)
    return isinstance(state, dict) and "decode_head.conv_seg.weight" in state


def _conv_bn(rest: str, first: int = 0) -> str:
    """mmcv ConvModule keys -> ours: 'conv.weight' -> f'{first}.weight', 'bn.bias' -> f'{first + 1}.bias'."""
    kind, tail = rest.split(".", 1)
    return f"{first + (kind == 'bn')}.{tail}"


def _separable(rest: str, first: int = 0) -> str:
    """DepthwiseSeparableConvModule keys -> ours [dw, BN, ReLU, pw, BN, ReLU] from index ``first``."""
    part, tail = rest.split(".", 1)
    return _conv_bn(tail, first + (3 if part == "pointwise_conv" else 0))


def our_key(key: str, aspp: str, pool_index: int, plus: bool) -> str:
    """Our key of one of mmseg's (``aspp``: our prefix of the ASPP module)."""
    if key.startswith("backbone."):
        return key
    if key.startswith("auxiliary_head.conv_seg."):
        return "aux_classifier.4." + key.removeprefix("auxiliary_head.conv_seg.")
    if key.startswith("auxiliary_head.convs.0."):
        return "aux_classifier." + _conv_bn(key.removeprefix("auxiliary_head.convs.0."))
    key = key.removeprefix("decode_head.")
    if key.startswith("image_pool.1."):
        return f"{aspp}convs.{pool_index}." + _conv_bn(key.removeprefix("image_pool.1."), 1)
    if m := re.fullmatch(r"aspp_modules\.(\d+)\.(.+)", key):
        index, rest = m.groups()
        return f"{aspp}convs.{index}." + (
            _separable(rest) if rest.startswith(("depthwise", "pointwise")) else _conv_bn(rest)
        )
    if key.startswith("bottleneck."):  # 3x3 on the concatenated branches (separable in v3+)
        rest = key.removeprefix("bottleneck.")
        return "classifier.aspp_conv." + _separable(rest) if plus else "classifier." + _conv_bn(rest, 1)
    if key.startswith("c1_bottleneck."):
        return "classifier.reduce." + _conv_bn(key.removeprefix("c1_bottleneck."))
    if m := re.fullmatch(r"sep_bottleneck\.(\d)\.(.+)", key):
        block, rest = m.groups()
        return "classifier.fuse." + _separable(rest, 6 * int(block))
    if key.startswith("conv_seg."):
        return ("classifier.cls." if plus else "classifier.4.") + key.removeprefix("conv_seg.")
    return key


def recognise(obj: dict, path: str | os.PathLike) -> Recognised:
    state: dict[str, torch.Tensor] = obj.get("state_dict", obj)
    if "backbone.stem.0.weight" not in state:
        raise CheckpointError(f"{path}: an mmsegmentation model whose backbone is not ResNetV1c (no backbone.stem.0)")
    plus = "decode_head.c1_bottleneck.conv.weight" in state
    if "decode_head.image_pool.1.conv.weight" not in state:
        raise CheckpointError(
            f"{path}: an mmsegmentation model whose decode head is not ASPPHead / DepthwiseSeparableASPPHead"
        )
    branches = {k.split(".")[2] for k in state if k.startswith("decode_head.aspp_modules.")}
    pool_index = len(branches)
    aspp = "classifier.aspp." if plus else "classifier.0."
    renamed = {our_key(k, aspp, pool_index, plus): v for k, v in state.items()}
    depth = resnet_depth(renamed, path, "mmsegmentation model")
    classes = int(state["decode_head.conv_seg.weight"].shape[0])
    variants = {"head_channels": int(state["decode_head.conv_seg.weight"].shape[1]), "deep_stem": True}
    variants |= {"aspp_projection": False, "pooling_first": True, "aux": "aux_classifier.4.weight" in renamed}
    if plus:
        variants |= {"aspp_separable": True, "aspp_conv": True, "separable": True}
    if pool_index != 4:
        raise CheckpointError(f"{path}: an mmsegmentation ASPP head with {pool_index - 1} atrous branches (not 3)")
    config = resnet_config(classes, 8, (12, 24, 36), torchvision_dilation=True, **variants)
    arch = f"deeplabv3{'plus' if plus else ''}-resnet{depth}"
    kind = f"mmsegmentation {'DepthwiseSeparableASPPHead' if plus else 'ASPPHead'} on ResNetV1c"
    return Recognised(kind, arch, config, renamed, _fields(obj.get("meta"), classes))


def _fields(meta: object, classes: int) -> dict:
    """Class names and palette from mmseg's checkpoint meta (1.x ``dataset_meta`` or 0.x ``CLASSES``)."""
    if not isinstance(meta, dict):
        return {}
    source: dict = meta["dataset_meta"] if isinstance(meta.get("dataset_meta"), dict) else meta
    names = source.get("classes", source.get("CLASSES"))
    palette = source.get("palette", source.get("PALETTE"))
    fields: dict[str, list] = {}
    if isinstance(names, (list, tuple)) and len(names) == classes:
        fields["classes"] = [str(n) for n in names]
        if isinstance(palette, (list, tuple)) and len(palette) == classes:
            fields["palette"] = [tuple(int(v) for v in c) for c in palette]
    return fields
