import pytest
import torch

from deeplab.models import ASPP, DeepLabV3Head, DeepLabV3PlusHead, FCNHead, aspp_v2_head


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_v3_head_and_aux_head_have_torchvision_keys(tv):
    from torchvision.models.segmentation.deeplabv3 import DeepLabHead
    from torchvision.models.segmentation.fcn import FCNHead as TVFCNHead

    assert shapes(DeepLabV3Head(2048, 21, (12, 24, 36))) == shapes(DeepLabHead(2048, 21))
    assert shapes(FCNHead(1024, 21)) == shapes(TVFCNHead(1024, 21))


def test_aspp_v3_branches_rates_and_image_pooling():
    aspp = ASPP(64, (6, 12, 18), 16).eval()
    assert [aspp.convs[i][0].dilation[0] for i in (1, 2, 3)] == [6, 12, 18]
    assert aspp.convs[0][0].kernel_size == (1, 1) and aspp.project[0].in_channels == 5 * 16
    with torch.no_grad():
        pooled = aspp.convs[4](torch.randn(2, 64, 5, 7))
    assert pooled.shape == (2, 16, 5, 7) and torch.allclose(pooled, pooled[..., :1, :1].expand_as(pooled))


def test_v2_aspp_is_sum_of_3x3_convs_to_classes():
    head = aspp_v2_head(32, 4, (6, 12, 18, 24))
    assert [(b.kernel_size, b.dilation[0], b.out_channels) for b in head.branches] == [
        ((3, 3), r, 4) for r in (6, 12, 18, 24)
    ]
    x = torch.randn(1, 32, 7, 5)
    with torch.no_grad():
        assert torch.allclose(head({"out": x}), sum(b(x) for b in head.branches), atol=1e-6)


@pytest.mark.parametrize("separable", [False, True])
def test_decoder_fuses_at_low_level_resolution(separable):
    head = DeepLabV3PlusHead(64, 24, 3, (6, 12, 18), channels=16, separable=separable).eval()
    assert head.reduce[0].out_channels == 48 and head.fuse[0].in_channels == 16 + 48
    with torch.no_grad():
        out = head({"out": torch.randn(1, 64, 3, 4), "low_level": torch.randn(1, 24, 9, 12)})
    assert out.shape == (1, 3, 9, 12)


def test_every_head_takes_the_feature_dict():
    from deeplab.models.heads import CascadeHead

    features = {"out": torch.randn(1, 32, 5, 6), "aux": torch.randn(1, 16, 5, 6)}
    heads = [DeepLabV3Head(32, 3, (1, 2, 3), 8), aspp_v2_head(32, 3, (1, 2)), CascadeHead(32, 3)]
    with torch.no_grad():
        for head in heads:
            assert head.eval()(features).shape == (1, 3, 5, 6)
        assert FCNHead(16, 3).eval()(features).shape == (1, 3, 5, 6)  # the aux head reads "aux"
