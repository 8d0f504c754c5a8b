"""Atrous MobileNetV2 (Sandler et al. 2018), the light backbone of DeepLab v3+ (Sec. 4, mobile models).

State-dict keys are torchvision's ``mobilenet_v2`` ``features.0``..``features.17`` keys
(``features.0.{0,1}`` stem conv + BN; inverted residuals ``features.N.conv.*``), so ImageNet weights
load as is; torchvision's final 1x1 conv to 1280 channels (``features.18``) and ``classifier.*`` are
not part of the segmentation backbone and are skipped. Output stride 8/16/32: a layer whose stride
would go below 1/output_stride keeps stride 1 at the current rate and multiplies the rate of the
layers after it (the rule of the DeepLab TF reference code), so H x W gives ceil(H/os) x ceil(W/os).

Released models that pad differently (VainF's, TensorFlow's) are in ``variants``.
"""

from __future__ import annotations

import torch
from torch import nn

from deeplab.models._utils import AtrousPlan, init_weights

# expansion t, channels c, repeats n, stride s (MobileNetV2 Table 2)
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
LOW_LEVEL_INDEX = 3  # output of features.3: stride 4, 24 channels at width 1


def make_divisible(value: float, divisor: int = 8, min_value: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, at least ``min_value``, never below 90% of value
    (the rule of the MobileNetV2 reference code and torchvision)."""
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, rate: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU6, keys ``0`` and ``1``."""
    padding = rate * (kernel_size // 2)
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, rate, groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise (strided or atrous), 1x1 linear projection; identity when shapes match."""

    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        rate: int = 1,
        residual: bool = False,
    ) -> None:
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        layers: list[nn.Module] = [] if expand_ratio == 1 else [conv_bn_relu6(inp, hidden)]
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, rate, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res_connect else y


class MobileNetV2(nn.Module):
    """Atrous MobileNetV2 features; ``forward`` returns {"low_level": stride-4 features, "out": last}.
    ``block`` builds the inverted residuals (torchvision's argument of the same name);
    ``divisible_by`` rounds the channels of each layer (8; TensorFlow's DeepLab uses 1 below width 1)."""

    pretrained_ignore = ("classifier.", "features.18.")

    def __init__(
        self,
        output_stride: int = 16,
        width_mult: float = 1.0,
        block: type[InvertedResidual] = InvertedResidual,
        divisible_by: int = 8,
    ) -> None:
        super().__init__()
        plan = AtrousPlan(output_stride, current_stride=2)  # after the stride-2 stem
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult!r}")
        self.output_stride = output_stride
        in_channels = make_divisible(32 * width_mult, divisible_by)
        layers: list[nn.Module] = [conv_bn_relu6(3, in_channels, 3, 2)]
        self.rates: list[int] = [1]
        for t, c, n, s in SETTINGS:
            out_channels = make_divisible(c * width_mult, divisible_by)
            for i in range(n):
                layer_rate = plan.rate  # a layer that turns atrous keeps the current rate itself
                stride, _ = plan.step(s if i == 0 else 1)
                residual = i > 0 and in_channels == out_channels
                unit = block(in_channels, out_channels, stride, t, layer_rate, residual)
                layers.append(unit)
                self.rates.append(layer_rate)
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.out_channels = in_channels
        self.low_level_channels = make_divisible(24 * width_mult, divisible_by)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low_level = self.features[: LOW_LEVEL_INDEX + 1](x)
        return {"low_level": low_level, "out": self.features[LOW_LEVEL_INDEX + 1 :](low_level)}
