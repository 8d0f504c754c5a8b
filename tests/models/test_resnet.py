import math

import pytest
import torch

from deeplab import build_model
from deeplab.models import ResNet
from tv import randomise_batchnorm


def conv2_strides_and_rates(layer):
    return [(unit.conv2.stride[0], unit.conv2.dilation[0]) for unit in layer]


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_maps_are_ceil_of_input_over_stride(output_stride):
    net = ResNet(50, output_stride, multi_grid=(1, 2, 4)).eval()
    with torch.no_grad():
        features = net(torch.randn(1, 3, 33, 47))
    assert features["out"].shape == (1, 2048, math.ceil(33 / output_stride), math.ceil(47 / output_stride))
    assert features["low_level"].shape == (1, 256, 9, 12)
    assert features["aux"].shape[1] == 1024


def test_v3_output_stride_16_multi_grid_layer_by_layer():
    net = ResNet(101, 16, multi_grid=(1, 2, 4))
    assert conv2_strides_and_rates(net.layer1) == [(1, 1)] * 3
    assert conv2_strides_and_rates(net.layer2) == [(2, 1)] + [(1, 1)] * 3
    assert conv2_strides_and_rates(net.layer3) == [(2, 1)] + [(1, 1)] * 22
    assert conv2_strides_and_rates(net.layer4) == [(1, 2), (1, 4), (1, 8)]  # rate 2 x multi-grid (1, 2, 4)
    assert net.layer4[0].downsample[0].stride == (1, 1)
    assert net.conv1.stride == (2, 2) and net.maxpool.stride == 2


def test_v2_output_stride_8_every_unit_at_the_stage_rate():
    net = ResNet(101, 8, multi_grid=None)
    assert conv2_strides_and_rates(net.layer3) == [(1, 2)] * 23
    assert conv2_strides_and_rates(net.layer4) == [(1, 4)] * 3
    assert net.layer3[0].downsample[0].stride == (1, 1)


def test_v3_output_stride_8_doubles_multi_grid_rates():
    net = ResNet(50, 8, multi_grid=(1, 2, 4))
    assert net.unit_rates["layer3"] == [2] * 6 and net.unit_rates["layer4"] == [4, 8, 16]


def test_output_stride_32_is_the_plain_resnet():
    net = ResNet(50, 32, multi_grid=(1, 2, 4))
    assert conv2_strides_and_rates(net.layer4) == [(2, 1), (1, 1), (1, 1)]


def test_cascade_copies_block4_with_doubling_rates():
    net = ResNet(50, 16, multi_grid=(1, 2, 4), extra_blocks=3).eval()
    assert [net.unit_rates[f"layer{i}"] for i in range(4, 8)] == [[2, 4, 8], [4, 8, 16], [8, 16, 32], [16, 32, 64]]
    for i in (5, 6, 7):
        layer = getattr(net, f"layer{i}")
        assert layer[0].downsample is None and layer[0].conv1.in_channels == 2048
        assert all(unit.conv2.stride == (1, 1) for unit in layer)
    with torch.no_grad():
        assert net(torch.randn(1, 3, 33, 47))["out"].shape == (1, 2048, 3, 3)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(50, 4)
    with pytest.raises(ValueError, match="multi_grid"):
        ResNet(50, 16, multi_grid=(1, 2))


def test_keys_are_torchvision_resnet_keys_and_imagenet_weights_load(tmp_path, tv):
    reference = tv.models.resnet50(weights=None).eval()
    randomise_batchnorm(reference)
    state = reference.state_dict()
    net = ResNet(50, 32)
    assert set(net.state_dict()) == {k for k in state if not k.startswith("fc.")}
    torch.save(state, tmp_path / "resnet50.pth")
    model = build_model("deeplabv3-resnet50", output_stride=32, pretrained_backbone=tmp_path / "resnet50.pth").eval()
    x = torch.randn(1, 3, 65, 49)
    with torch.no_grad():
        ours = model.backbone(x)["out"]
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        theirs = reference.layer4(reference.layer3(reference.layer2(reference.layer1(y))))
    assert torch.allclose(ours, theirs, atol=1e-5 * theirs.abs().max().item())
