"""Named model configurations from the DeepLab papers, and ``build_model`` which composes them.

References: v1 = Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully
Connected CRFs", ICLR 2015. v2 = Chen et al., "DeepLab: ... Atrous Convolution, and Fully Connected
CRFs", TPAMI 2017. v3 = Chen et al., "Rethinking Atrous Convolution for Semantic Image
Segmentation", 2017. v3+ = Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018.

``atrous_rates`` of a preset hold at its ``output_stride``; overriding only ``output_stride`` scales
them by the ratio (v3 Sec. 4.1: rates doubled at output stride 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deeplab.models._utils import check_output_stride
from deeplab.models.decoder import DeepLabV3PlusHead
from deeplab.models.deeplab import DeepLab
from deeplab.models.heads import CascadeHead, DeepLabV3Head, FCNHead, aspp_v2_head, largefov_head
from deeplab.models.meta import default_meta
from deeplab.models.mobilenet import MobileNetV2
from deeplab.models.pretrained import load_backbone_weights
from deeplab.models.resnet import ResNet
from deeplab.models.vgg import VGG16


@dataclass(frozen=True)
class Preset:
    """One paper configuration: backbone, head, default output stride, rates and the paper's figures."""

    backbone: str  # "vgg16", "resnet50", "resnet101" or "mobilenetv2"
    head: str  # "largefov" (summed fc6-fc8 branches), "aspp_v2", "aspp_v3", "v3plus" or "cascade"
    output_stride: int
    atrous_rates: tuple[int, ...]
    reference: str
    multi_grid: tuple[int, ...] | None = None
    head_channels: int = 256
    extra_blocks: int = 0
    separable_decoder: bool = False
    pool5a: bool = False  # VGG: the 3x3 average pool between pool5 and fc6 of the v1 release
    paper_params: str | None = None


PRESETS: dict[str, Preset] = {
    "deeplabv1-vgg16-largefov": Preset(
        "vgg16",
        "largefov",
        8,
        (12,),
        "v1 Sec. 4.1 / Table 2: DeepLab-LargeFOV, fc6 3x3 rate 12, 1024 channels",
        head_channels=1024,
        pool5a=True,
        paper_params="20.5M",
    ),
    "deeplabv2-vgg16-aspp-s": Preset(
        "vgg16",
        "largefov",
        8,
        (2, 4, 8, 12),
        "v2 Sec. 4.1 / Table 3: ASPP-S, four fc6-fc7-fc8 branches summed",
        head_channels=1024,
    ),
    "deeplabv2-vgg16-aspp-l": Preset(
        "vgg16",
        "largefov",
        8,
        (6, 12, 18, 24),
        "v2 Sec. 4.1 / Table 3: ASPP-L, four fc6-fc7-fc8 branches summed",
        head_channels=1024,
    ),
    "deeplabv2-resnet101": Preset(
        "resnet101", "aspp_v2", 8, (6, 12, 18, 24), "v2 Sec. 4.1 ResNet-101 + ASPP-L (3x3 convs to classes, summed)"
    ),
    "deeplabv3-resnet50": Preset(
        "resnet50",
        "aspp_v3",
        16,
        (6, 12, 18),
        "v3 Sec. 3.3: ASPP + image pooling, multi-grid (1,2,4)",
        multi_grid=(1, 2, 4),
    ),
    "deeplabv3-resnet101": Preset(
        "resnet101",
        "aspp_v3",
        16,
        (6, 12, 18),
        "v3 Sec. 3.3: ASPP + image pooling, multi-grid (1,2,4)",
        multi_grid=(1, 2, 4),
    ),
    "deeplabv3-resnet101-cascade": Preset(
        "resnet101",
        "cascade",
        16,
        (),
        "v3 Sec. 3.2: block4 copied as block5-7, multi-grid (1,2,4), no ASPP",
        multi_grid=(1, 2, 4),
        extra_blocks=3,
    ),
    "deeplabv3plus-resnet50": Preset(
        "resnet50",
        "v3plus",
        16,
        (6, 12, 18),
        "v3+ Sec. 3.1 on ResNet-50: ASPP + decoder with 48-channel layer1 features",
        multi_grid=(1, 2, 4),
    ),
    "deeplabv3plus-resnet101": Preset(
        "resnet101",
        "v3plus",
        16,
        (6, 12, 18),
        "v3+ Sec. 3.1: ASPP + decoder with 48-channel layer1 features",
        multi_grid=(1, 2, 4),
    ),
    "deeplabv3-mobilenetv2": Preset(
        "mobilenetv2",
        "aspp_v3",
        16,
        (6, 12, 18),
        "v3 head on MobileNetV2 (v3+ Sec. 4 mobile backbone); ASPP width reduced to 128 for CPU speed",
        head_channels=128,
    ),
    "deeplabv3plus-mobilenetv2": Preset(
        "mobilenetv2",
        "v3plus",
        16,
        (6, 12, 18),
        "v3+ decoder on MobileNetV2 stride-4 features; width 128 and separable decoder convs for CPU speed",
        head_channels=128,
        separable_decoder=True,
    ),
}

RESNET_OVERRIDES = {"multi_grid", "aux", "torchvision_dilation", "stride_in_1x1", "stem_ceil_mode", "deep_stem"}

# Architecture variants of released models, as build options (stored in the config only when given).
# ASPP heads (config key -> heads.ASPP argument, all bool): image_pooling (v3 Table 5 ablation),
# aspp_separable / separable_bn (separable branches in the paper's or segmentation_models_pytorch's
# style), aspp_projection / pooling_first (mmsegmentation). The v3+ decoder adds its own options
# (see decoder.DeepLabV3PlusHead); its separable convs follow separable_bn too.
ASPP_OPTIONS = {
    "image_pooling": "image_pooling",
    "aspp_separable": "separable",
    "separable_bn": "separable_bn",
    "aspp_projection": "projection",
    "pooling_first": "pooling_first",
}
DECODER_OPTIONS = {"separable": bool, "fuse_convs": int, "low_level_first": bool, "aspp_conv": bool}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the valid names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def allowed_overrides(preset: Preset) -> set[str]:
    """The build_model overrides that apply to ``preset``."""
    allowed = {"output_stride", "pretrained_backbone", "align_corners"}
    if preset.atrous_rates:
        allowed.add("atrous_rates")
    if preset.backbone.startswith("resnet"):
        allowed |= RESNET_OVERRIDES
    if preset.head == "cascade":
        allowed.add("extra_blocks")
    if preset.backbone == "mobilenetv2":
        allowed |= {"width_mult", "pad_block_input"}
    if preset.backbone == "vgg16":
        allowed.add("pool_ceil_mode")
    if preset.head in ("aspp_v3", "v3plus"):
        allowed.add("head_channels")
    return allowed | set(_variants(preset))


def _variants(preset: Preset) -> dict[str, type]:
    """The head's variant options (config key -> type) for ``preset``."""
    aspp = dict.fromkeys(ASPP_OPTIONS, bool)
    return {"aspp_v3": aspp, "v3plus": {**aspp, **DECODER_OPTIONS}}.get(preset.head, {})


def resolve_config(name: str, num_classes: int = 21, **overrides: Any) -> dict[str, Any]:
    """The full, explicit build configuration of preset ``name`` with ``overrides`` applied."""
    preset = get_preset(name)
    unknown = sorted(set(overrides) - allowed_overrides(preset))
    if unknown:
        raise ValueError(
            f"override(s) {', '.join(unknown)} do not apply to {name!r}; "
            f"allowed: {', '.join(sorted(allowed_overrides(preset)))}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    output_stride = overrides.get("output_stride", preset.output_stride)
    check_output_stride(output_stride)
    config: dict[str, Any] = {"num_classes": num_classes, "output_stride": output_stride}
    if preset.atrous_rates:
        scaled = scale_rates(preset.atrous_rates, preset.output_stride, output_stride)
        config["atrous_rates"] = _rates("atrous_rates", overrides.get("atrous_rates", scaled))
    if preset.backbone.startswith("resnet"):
        multi_grid = overrides.get("multi_grid", preset.multi_grid)
        config["multi_grid"] = None if multi_grid is None else _rates("multi_grid", multi_grid, length=3)
        config["aux"] = bool(overrides.get("aux", False))
        config["torchvision_dilation"] = bool(overrides.get("torchvision_dilation", False))
        for key in ("stride_in_1x1", "stem_ceil_mode", "deep_stem"):  # Caffe ResNet (v2 release), ResNetV1c
            if key in overrides:
                config[key] = bool(overrides[key])
    if preset.head == "cascade":
        config["extra_blocks"] = int(overrides.get("extra_blocks", preset.extra_blocks))
    if preset.backbone == "mobilenetv2":
        config["width_mult"] = float(overrides.get("width_mult", 1.0))
        if "pad_block_input" in overrides:  # VainF's MobileNetV2 padding
            config["pad_block_input"] = bool(overrides["pad_block_input"])
    if preset.backbone == "vgg16" and "pool_ceil_mode" in overrides:  # Caffe's pooling (the releases)
        config["pool_ceil_mode"] = bool(overrides["pool_ceil_mode"])
    if "head_channels" in overrides:  # ASPP / decoder width (VainF's MobileNet models: 256)
        config["head_channels"] = int(overrides["head_channels"])
    for key, kind in _variants(preset).items():
        if key in overrides:
            config[key] = kind(overrides[key])
    if "align_corners" in overrides:  # of the final upsampling (and the decoder's)
        config["align_corners"] = bool(overrides["align_corners"])
    return config


def scale_rates(rates: tuple[int, ...], old_stride: int, new_stride: int) -> tuple[int, ...]:
    """Atrous rates that keep the same field of view at another output stride (v3 Sec. 4.1)."""
    return tuple(max(1, round(r * old_stride / new_stride)) for r in rates)


def _rates(argument: str, rates: Any, length: int | None = None) -> tuple[int, ...]:
    """Validate positive integer rates (exactly ``length`` of them when given, else at least one)."""
    count = f"{length}" if length else "one or more"
    try:
        values = tuple(int(r) for r in rates)
    except (TypeError, ValueError):
        raise ValueError(f"{argument} must be {count} positive integers, got {rates!r}") from None
    wrong_length = len(values) != length if length else not values
    if wrong_length or min(values) < 1 or any(v != r for v, r in zip(values, rates)):
        raise ValueError(f"{argument} must be {count} positive integers, got {rates!r}")
    return values


def build_model(name: str, num_classes: int = 21, **overrides: Any) -> DeepLab:
    """Build preset ``name`` (see PRESETS) with ``overrides``; ``pretrained_backbone=PATH`` loads
    torchvision ImageNet weights into the backbone. ``model.meta`` holds the arch and full config."""
    pretrained = overrides.pop("pretrained_backbone", None)
    config = resolve_config(name, num_classes, **overrides)
    preset = PRESETS[name]
    backbone = _backbone(preset, config)
    aux = FCNHead(backbone.aux_channels, num_classes) if config.get("aux") else None
    model = DeepLab(backbone, _head(preset, config, backbone), aux, config.get("align_corners", False))
    model.meta = default_meta(name, config)
    if pretrained is not None:
        load_backbone_weights(model, pretrained)
    return model


def _backbone(preset: Preset, config: dict[str, Any]) -> nn.Module:
    if preset.backbone == "vgg16":
        return VGG16(config["output_stride"], pool5a=preset.pool5a, pool_ceil_mode=config.get("pool_ceil_mode", False))
    if preset.backbone == "mobilenetv2":
        return MobileNetV2(config["output_stride"], config["width_mult"], config.get("pad_block_input", False))
    depth = int(preset.backbone.removeprefix("resnet"))
    return ResNet(
        depth,
        config["output_stride"],
        config["multi_grid"],
        config.get("extra_blocks", 0),
        config["torchvision_dilation"],
        config.get("stride_in_1x1", False),
        config.get("stem_ceil_mode", False),
        config.get("deep_stem", False),
    )


def _head(preset: Preset, config: dict[str, Any], backbone: nn.Module) -> nn.Module:
    num_classes, channels = config["num_classes"], backbone.out_channels
    head_channels = config.get("head_channels", preset.head_channels)
    if preset.head == "largefov":
        return largefov_head(channels, num_classes, config["atrous_rates"], preset.head_channels)
    if preset.head == "aspp_v2":
        return aspp_v2_head(channels, num_classes, config["atrous_rates"])
    aspp = {name: config[key] for key, name in ASPP_OPTIONS.items() if key in config}
    if preset.head == "aspp_v3":
        return DeepLabV3Head(channels, num_classes, config["atrous_rates"], head_channels, aspp)
    if preset.head == "v3plus":
        decoder = {k: config[k] for k in (*DECODER_OPTIONS, "separable_bn") if k in config}
        return DeepLabV3PlusHead(
            channels,
            backbone.low_level_channels,
            num_classes,
            config["atrous_rates"],
            head_channels,
            **{"separable": preset.separable_decoder, **decoder},
            aspp=aspp,
            align_corners=config.get("align_corners", False),
        )
    return CascadeHead(channels, num_classes)  # cascade: 1x1 to classes on block7


def complexity(name: str, size: int = 513, **overrides: Any) -> tuple[int, float]:
    """(parameter count, GFLOPs of one size x size forward) of a preset, counted on the meta device
    without real compute (FlopCounterMode: a multiply-add counts as 2 FLOPs; convs and matmuls only)."""

    with torch.device("meta"):
        model = build_model(name, **overrides).eval()
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 3, size, size, device="meta"))
    return params, counter.get_total_flops() / 1e9


def presets_table(size: int = 513) -> str:
    """The presets with parameters, GFLOPs at size x size and the paper's parameter figure."""
    rows = [f"{'preset':<30} {'params':>8} {f'GFLOPs@{size}':>12} {'paper':>7}  reference"]
    for name, preset in PRESETS.items():
        params, gflops = complexity(name, size)
        paper = preset.paper_params or "-"
        rows.append(f"{name:<30} {params / 1e6:>7.1f}M {gflops:>12.1f} {paper:>7}  {preset.reference}")
    return "\n".join(rows)
