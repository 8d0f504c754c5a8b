"""The peers' versions of the paper's modules: each changes what it says, and keeps the paper's keys."""

from __future__ import annotations

import torch

from deeplab.models import VGG16, MobileNetV2, ResNet, build_model, variants
from deeplab.models.heads import ASPP


def test_torchvision_dilation_keeps_previous_rate_on_first_unit():
    net = ResNet(50, 8, multi_grid=None)
    variants.torchvision_dilation(net)
    assert net.unit_rates["layer3"] == [1, 2, 2, 2, 2, 2]
    assert net.unit_rates["layer4"] == [2, 4, 4]
    assert [unit.conv2.dilation[0] for unit in net.layer4] == [2, 4, 4]
    assert [unit.conv2.padding[0] for unit in net.layer3][:2] == [1, 2]


def test_caffe_resnet_strides_on_the_1x1_conv_and_rounds_the_stem_up():
    net = ResNet(50, 16)
    variants.stride_in_1x1(net)
    variants.stem_ceil_mode(net)
    assert net.layer2[0].conv1.stride == (2, 2) and net.layer2[0].conv2.stride == (1, 1)
    assert net.layer2[0].downsample[0].stride == (2, 2)
    assert net(torch.zeros(1, 3, 64, 64))["out"].shape[-1] == 5  # 64 -> 32 -> 17 (rounded up) -> 9 -> 5


def test_deep_stem_replaces_the_7x7_conv():
    net = variants.DeepStemResNet(50, 16)
    keys = set(net.state_dict())
    assert "conv1.weight" not in keys and {"stem.0.weight", "stem.3.weight", "stem.6.weight"} <= keys
    assert net(torch.zeros(1, 3, 64, 64))["out"].shape[-2:] == (4, 4)


def test_vainf_mobilenet_pads_block_inputs_with_the_same_keys():
    paper, vainf = MobileNetV2(16, 0.25), variants.vainf_mobilenetv2(16, 0.25)
    assert list(paper.state_dict()) == list(vainf.state_dict())
    vainf.load_state_dict(paper.state_dict())
    x = torch.randn(1, 3, 64, 64)
    a, b = paper.eval()(x)["out"], vainf.eval()(x)["out"]
    assert a.shape == b.shape and not torch.allclose(a, b)  # same weights, another padding


def test_caffe_pools_round_up():
    net = VGG16(8)
    variants.caffe_pools(net)
    assert net(torch.zeros(1, 3, 64, 64))["out"].shape[-1] == 9  # 64 -> 33 -> 17 -> 9, then stride 1


def test_peer_aspp_without_projection_and_with_pooling_first():
    paper = ASPP(16, (1, 2), 8).eval()
    peer = variants.PeerASPP(16, (1, 2), 8, projection=False, pooling_first=True).eval()
    assert peer.out_channels == 4 * 8 and not list(peer.project.parameters())
    peer.load_state_dict({k: v for k, v in paper.state_dict().items() if not k.startswith("project.")})
    x = torch.randn(1, 16, 9, 9)
    branches = [b(x) for b in paper.convs]
    assert torch.allclose(peer(x), torch.cat([branches[-1], *branches[:-1]], 1))


def test_smp_separable_convs_have_no_inner_batch_norm():
    peer = variants.PeerASPP(16, (2,), 8, separable=True, separable_bn=False)
    assert isinstance(peer.convs[1][0], torch.nn.Sequential) and len(peer.convs[1]) == 3
    paper = ASPP(16, (2,), 8, separable=True)
    assert len(paper.convs[1]) == 6  # depthwise, BN, ReLU, pointwise, BN, ReLU


def test_a_peer_option_builds_the_peer_head_and_the_paper_head_otherwise():
    paper = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.25)
    vainf = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.25, fuse_convs=1, low_level_first=True)
    assert type(paper.classifier).__name__ == "DeepLabV3PlusHead"
    assert isinstance(vainf.classifier, variants.PeerV3PlusHead) and len(vainf.classifier.fuse) < len(
        paper.classifier.fuse
    )
