"""Named model configurations from the DeepLab papers, and ``build_model`` which composes them.

References: v1 = Chen et al., "Semantic Image Segmentation with Deep Convolutional Nets and Fully
Connected CRFs", ICLR 2015. v2 = Chen et al., "DeepLab: ... Atrous Convolution, and Fully Connected
CRFs", TPAMI 2017. v3 = Chen et al., "Rethinking Atrous Convolution for Semantic Image
Segmentation", 2017. v3+ = Chen et al., "Encoder-Decoder with Atrous Separable Convolution", ECCV 2018.

``atrous_rates`` of a preset hold at its ``output_stride``; overriding only ``output_stride`` scales
them by the ratio (v3 Sec. 4.1: rates doubled at output stride 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from deeplab.models import variants
from deeplab.models._utils import check_output_stride
from deeplab.models.decoder import DeepLabV3PlusHead
from deeplab.models.deeplab import DeepLab
from deeplab.models.heads import ASPP, ASPPHead, CascadeHead, DeepLabV3Head, FCNHead, aspp_v2_head, largefov_head
from deeplab.models.meta import default_meta
from deeplab.models.mobilenet import MobileNetV2
from deeplab.models.pretrained import load_backbone_weights
from deeplab.models.resnet import ResNet
from deeplab.models.vgg import VGG16


@dataclass(frozen=True)
class Preset:
    """One paper configuration: backbone, head, default output stride, rates and the paper's figures."""

    backbone: str  # a key of BACKBONES
    head: str  # a key of HEADS
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
    "deeplabv3-mobilenetv2-tf": Preset(
        "mobilenetv2",
        "aspp",
        16,
        (),
        "TensorFlow's DeepLab v3 MobileNetV2 (model zoo): ASPP of a 1x1 branch and image pooling, "
        "1x1 projection, 1x1 logits (v3 Sec. 3.3 as written)",
        head_channels=256,
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

# -- the parts: each backbone and head is one entry (its factory and the build options it takes) --


@dataclass(frozen=True)
class Option:
    """A build option: how a given value is read, and the value stored in the config when it is not
    given (``default(preset)``; no default: stored only when given)."""

    read: Callable[[Any], Any]
    default: Callable[[Preset], Any] | None = None


@dataclass(frozen=True)
class Part:
    """A backbone or head: ``build(config, preset[, backbone])`` and the options it reads from the config."""

    build: Callable[..., nn.Module]
    options: dict[str, Option]


def _multi_grid(value: Any) -> tuple[int, ...] | None:
    return None if value is None else _rates("multi_grid", value, length=3)


def _fuse_convs(value: Any) -> int:
    if value not in (1, 2):
        raise ValueError(f"fuse_convs must be 1 or 2, got {value!r}")
    return int(value)


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(config: dict[str, Any], preset: Preset) -> nn.Module:
        args = (depth, config["output_stride"], config["multi_grid"], config.get("extra_blocks", 0))
        net = variants.DeepStemResNet(*args) if config.get("deep_stem") else ResNet(*args)
        for option in ("torchvision_dilation", "stride_in_1x1", "stem_ceil_mode"):
            if config.get(option):
                getattr(variants, option)(net)
        return net

    return build


def _mobilenetv2(config: dict[str, Any], preset: Preset) -> nn.Module:
    if config.get("pad_block_input"):
        return variants.vainf_mobilenetv2(config["output_stride"], config["width_mult"])
    return MobileNetV2(config["output_stride"], config["width_mult"], divisible_by=config.get("divisible_by", 8))


def _vgg16(config: dict[str, Any], preset: Preset) -> nn.Module:
    net = VGG16(config["output_stride"], pool5a=preset.pool5a)
    if config.get("pool_ceil_mode"):
        variants.caffe_pools(net)
    return net


RESNET_OPTIONS = {
    "multi_grid": Option(_multi_grid, lambda p: p.multi_grid),
    "aux": Option(bool, lambda p: False),
    "torchvision_dilation": Option(bool, lambda p: False),
    "stride_in_1x1": Option(bool),
    "stem_ceil_mode": Option(bool),
    "deep_stem": Option(bool),
}
BACKBONES: dict[str, Part] = {
    "resnet50": Part(_resnet(50), RESNET_OPTIONS),
    "resnet101": Part(_resnet(101), RESNET_OPTIONS),
    "mobilenetv2": Part(
        _mobilenetv2,
        {"width_mult": Option(float, lambda p: 1.0), "divisible_by": Option(int), "pad_block_input": Option(bool)},
    ),
    "vgg16": Part(_vgg16, {"pool_ceil_mode": Option(bool)}),
}


def _aspp(config: dict[str, Any], in_channels: int, channels: int) -> ASPP:
    """The paper's ASPP, or the peers' (``variants.PeerASPP``) where a peer option is in the config."""
    args = in_channels, config.get("atrous_rates", ()), channels, config.get("image_pooling", True)
    separable = config.get("aspp_separable", False)
    peer: dict[str, Any] = {key: config[key] for key in ("separable_bn", "pooling_first") if key in config}
    if "aspp_projection" in config:
        peer["projection"] = config["aspp_projection"]
    if peer:
        return variants.PeerASPP(*args, separable=separable, **peer)
    return ASPP(*args, separable=separable)


def _largefov(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    return largefov_head(backbone.out_channels, config["num_classes"], config["atrous_rates"], preset.head_channels)


def _aspp_v2(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    return aspp_v2_head(backbone.out_channels, config["num_classes"], config["atrous_rates"])


def _aspp_logits(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    channels = config.get("head_channels", preset.head_channels)
    aspp = _aspp(config, backbone.out_channels, channels)
    return ASPPHead(backbone.out_channels, config["num_classes"], config.get("atrous_rates", ()), channels, aspp=aspp)


def _aspp_v3(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    channels = config.get("head_channels", preset.head_channels)
    aspp = _aspp(config, backbone.out_channels, channels)
    return DeepLabV3Head(backbone.out_channels, config["num_classes"], config["atrous_rates"], channels, aspp=aspp)


def _v3plus(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    channels = config.get("head_channels", preset.head_channels)
    args = (backbone.out_channels, backbone.low_level_channels, config["num_classes"], config["atrous_rates"], channels)
    separable = config.get("separable", preset.separable_decoder)
    aspp = _aspp(config, backbone.out_channels, channels)
    peer_options = ("fuse_convs", "low_level_first", "aspp_conv", "separable_bn", "align_corners")
    peer = {key: config[key] for key in peer_options if key in config}
    if peer:
        return variants.PeerV3PlusHead(*args, separable=separable, aspp=aspp, **peer)
    return DeepLabV3PlusHead(*args, separable=separable, aspp=aspp)


def _cascade(config: dict[str, Any], preset: Preset, backbone: Any) -> nn.Module:
    return CascadeHead(backbone.out_channels, config["num_classes"])  # a 1x1 conv to classes on block7


# ASPP's options: image_pooling (v3 Table 5 ablation), aspp_separable (v3+ Sec. 3.2), and the
# peers' separable_bn (smp), aspp_projection and pooling_first (mmseg): see models/variants.py.
ASPP_OPTIONS = {
    "head_channels": Option(int),
    "image_pooling": Option(bool),
    "aspp_separable": Option(bool),
    "separable_bn": Option(bool),
    "aspp_projection": Option(bool),
    "pooling_first": Option(bool),
}
DECODER_OPTIONS = {  # the decoder's, beyond ASPP's: the paper's separable convs, the peers' layouts
    "separable": Option(bool),
    "fuse_convs": Option(_fuse_convs),
    "low_level_first": Option(bool),
    "aspp_conv": Option(bool),
}
HEADS: dict[str, Part] = {
    "largefov": Part(_largefov, {}),
    "aspp_v2": Part(_aspp_v2, {}),
    "aspp": Part(_aspp_logits, ASPP_OPTIONS),  # v3 Sec. 3.3 as written (TensorFlow's models)
    "aspp_v3": Part(_aspp_v3, ASPP_OPTIONS),  # with torchvision's 3x3 conv before the logits
    "v3plus": Part(_v3plus, ASPP_OPTIONS | DECODER_OPTIONS),
    "cascade": Part(_cascade, {"extra_blocks": Option(int, lambda p: p.extra_blocks)}),
}
COMMON_OPTIONS = {"align_corners": Option(bool)}  # of the final upsampling (and the v3+ decoder's)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError listing the valid names otherwise."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _options(preset: Preset) -> dict[str, Option]:
    """Every build option of ``preset`` beyond num_classes, output_stride and atrous_rates."""
    return BACKBONES[preset.backbone].options | HEADS[preset.head].options | COMMON_OPTIONS


def allowed_overrides(preset: Preset) -> set[str]:
    """The build_model overrides that apply to ``preset``."""
    allowed = {"output_stride", "pretrained_backbone", *_options(preset)}
    return allowed | ({"atrous_rates"} if preset.atrous_rates else set())


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
    for key, option in _options(preset).items():
        if key in overrides:
            config[key] = option.read(overrides[key])
        elif option.default is not None:
            config[key] = option.default(preset)
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
    """Build a preset of the DeepLab papers.

    Args:
        name: a key of ``PRESETS`` (``deeplab models`` lists them).
        num_classes: the classifier's output channels.
        **overrides: build options of the preset's backbone and head (``allowed_overrides``), e.g.
            ``output_stride``, ``atrous_rates``, ``multi_grid``, ``image_pooling``;
            ``pretrained_backbone=PATH`` loads torchvision ImageNet weights into the backbone.

    Returns:
        The model; ``model.meta`` holds the preset name and the full config (``resolve_config``).
    """
    pretrained = overrides.pop("pretrained_backbone", None)
    config = resolve_config(name, num_classes, **overrides)
    preset = PRESETS[name]
    backbone: Any = BACKBONES[preset.backbone].build(config, preset)
    head = HEADS[preset.head].build(config, preset, backbone)
    aux = FCNHead(backbone.aux_channels, num_classes) if config.get("aux") else None
    model = DeepLab(backbone, head, aux, config.get("align_corners", False))
    model.meta = default_meta(name, config)
    if pretrained is not None:
        load_backbone_weights(model, pretrained)
    return model


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
