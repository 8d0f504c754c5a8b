import math

import pytest
import torch
from torch import nn

from deeplab import build_model
from deeplab.models import VGG16


def test_largefov_backbone_strides_and_rates():
    net = VGG16(8)
    assert net.pool_strides == [2, 2, 2, 1, 1]  # pool4, pool5 stride 1
    assert net.conv_rates == [1] * 10 + [2] * 3  # conv5 atrous at rate 2
    pools = [m for m in net.features if isinstance(m, nn.MaxPool2d)]
    assert all(p.kernel_size == 3 and p.padding == 1 for p in pools)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_map_is_ceil(output_stride):
    net = VGG16(output_stride).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 33, 47))["out"]
    assert out.shape == (1, 512, math.ceil(33 / output_stride), math.ceil(47 / output_stride))


def test_largefov_head_and_paper_parameter_count():
    model = build_model("deeplabv1-vgg16-largefov")
    (branch,) = model.classifier.branches
    assert branch.fc6.kernel_size == (3, 3) and branch.fc6.dilation == (12, 12) and branch.fc6.out_channels == 1024
    assert branch.fc7.kernel_size == (1, 1) and branch.fc7.out_channels == 1024
    assert branch.fc8.out_channels == 21
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 20.5) < 0.05  # v1 Table 2: 20.5M


@pytest.mark.parametrize(
    "name, rates", [("deeplabv2-vgg16-aspp-s", (2, 4, 8, 12)), ("deeplabv2-vgg16-aspp-l", (6, 12, 18, 24))]
)
def test_v2_vgg_aspp_branches_are_summed(name, rates):
    model = build_model(name, num_classes=3).eval()
    assert [b.fc6.dilation[0] for b in model.classifier.branches] == list(rates)
    x = torch.randn(1, 512, 5, 6)
    with torch.no_grad():
        assert torch.allclose(model.classifier({"out": x}), sum(b(x) for b in model.classifier.branches), atol=1e-5)


def test_largefov_has_pool5a_average_pool_before_fc6():
    v1 = build_model("deeplabv1-vgg16-largefov", num_classes=3).eval()
    last = v1.backbone.features[-1]
    assert isinstance(last, nn.AvgPool2d) and (last.kernel_size, last.stride, last.padding) == (3, 1, 1)
    assert isinstance(v1.backbone.features[-2], nn.MaxPool2d)  # pool5, then pool5a
    plain = VGG16(8).eval()
    plain.load_state_dict(v1.backbone.state_dict())  # no weights of its own: the keys are unchanged
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        pooled = nn.functional.avg_pool2d(plain(x)["out"], 3, 1, 1)
        assert torch.allclose(v1.backbone(x)["out"], pooled)
    v2 = build_model("deeplabv2-vgg16-aspp-l", num_classes=3)
    assert not isinstance(v2.backbone.features[-1], nn.AvgPool2d)


def test_keys_are_torchvision_vgg16_feature_keys(tv):
    with torch.device("meta"):
        reference = tv.models.vgg16(weights=None)
    assert set(VGG16(8).state_dict()) == {k for k in reference.state_dict() if k.startswith("features.")}
