import math

import pytest
import torch

from deeplab import build_model
from deeplab.models import MobileNetV2
from tv import randomise_batchnorm


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_maps_are_ceil(output_stride):
    net = MobileNetV2(output_stride).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 33, 47))
    assert features["out"].shape == (1, 320, math.ceil(33 / output_stride), math.ceil(47 / output_stride))
    assert features["low_level"].shape == (1, 24, 9, 12)


def test_output_stride_16_rates_and_strides():
    net = MobileNetV2(16)
    depthwise = [block.conv[-3][0] for block in net.features[1:]]
    assert [c.stride[0] for c in depthwise] == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert [c.dilation[0] for c in depthwise] == [1] * 14 + [2, 2, 2]  # the de-strided layer keeps rate 1
    assert net.rates[14:] == [1, 2, 2, 2]


def test_width_mult_scales_channels():
    net = MobileNetV2(16, width_mult=0.5).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 33, 47))
    assert features["low_level"].shape[1] == net.low_level_channels == 16
    assert features["out"].shape[1] == net.out_channels == 160
    model = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)


def test_keys_are_torchvision_keys_and_imagenet_weights_load(tmp_path, tv):
    reference = tv.models.mobilenet_v2(weights=None).eval()
    randomise_batchnorm(reference)
    torch.save(reference.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = build_model("deeplabv3-mobilenetv2", output_stride=32, pretrained_backbone=tmp_path / "mobilenet_v2.pth")
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad():
        ours = model.eval().backbone(x)["out"]
        theirs = reference.features[:18](x)
    assert torch.allclose(ours, theirs, atol=1e-5 * theirs.abs().max().item())
