"""segmentation_models_pytorch checkpoints give smp's own logits (skipped where smp is not installed)."""

import pytest
import torch

from deeplab import load_model
from deeplab.checkpoint import CheckpointError
from tv import randomise_batchnorm


@pytest.fixture
def smp(tv):
    return pytest.importorskip("segmentation_models_pytorch")


CASES = [
    ("DeepLabV3", {}, {}),  # smp defaults: output stride 8, rates 12/24/36
    ("DeepLabV3", {"decoder_aspp_separable": True, "encoder_output_stride": 16}, {"output_stride": 16}),
    ("DeepLabV3Plus", {}, {}),  # output stride 16, separable ASPP, one separable fuse conv
    ("DeepLabV3Plus", {"encoder_output_stride": 8, "decoder_atrous_rates": (6, 12, 18)}, {"output_stride": 8}),
]


@pytest.mark.parametrize("name, kwargs, overrides", CASES)
def test_smp_models_give_smps_logits(tmp_path, smp, name, kwargs, overrides):
    torch.manual_seed(0)
    reference = getattr(smp, name)(encoder_name="resnet50", encoder_weights=None, classes=5, **kwargs).eval()
    randomise_batchnorm(reference)
    torch.save(reference.state_dict(), tmp_path / "smp.pth")
    if "decoder_atrous_rates" in kwargs:
        overrides = overrides | {"atrous_rates": kwargs["decoder_atrous_rates"]}
    model = load_model(tmp_path / "smp.pth", **overrides)
    assert model.meta.arch == f"deeplabv3{'plus' if name.endswith('Plus') else ''}-resnet50"
    x = torch.randn(1, 3, 64, 96)  # smp needs sizes divisible by 16
    with torch.no_grad():
        theirs, ours = reference(x), model(x)
    assert ours.shape == theirs.shape == (1, 5, 64, 96)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4


def test_smp_upsampling_and_dilation_matter(tmp_path, smp):
    """The recognised options are needed: torchvision's conventions give other logits."""
    torch.manual_seed(0)
    reference = smp.DeepLabV3(encoder_name="resnet50", encoder_weights=None, classes=3).eval()
    torch.save(reference.state_dict(), tmp_path / "smp.pth")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        theirs = reference(x)
        for wrong in ({"align_corners": False}, {"torchvision_dilation": True}):
            ours = load_model(tmp_path / "smp.pth", **wrong)(x)
            assert ((ours - theirs).abs().max() / theirs.abs().max()).item() > 1e-2


def test_smp_with_another_encoder_is_a_one_line_error(tmp_path):
    state = {"encoder.conv1.weight": torch.zeros(1), "segmentation_head.0.weight": torch.zeros(3, 256, 1, 1)}
    torch.save(state, tmp_path / "effnet.pth")
    with pytest.raises(CheckpointError, match=r"effnet\.pth: a segmentation_models_pytorch model whose encoder"):
        load_model(tmp_path / "effnet.pth")
