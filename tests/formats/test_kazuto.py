"""kazuto1011/deeplab-pytorch's DeepLab v2 (the authors' Caffe model converted) against a
reimplementation of its forward (tests/peers.py): BGR minus mean in, logits upsampled to the image."""

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from deeplab import load_model
from deeplab.apps.cli import main
from peers import KazutoDeepLabV2, kazuto_input, our_input
from tv import randomise_batchnorm


@pytest.mark.parametrize("msc, v1, size", [(True, False, (65, 81)), (False, False, (64, 96)), (False, True, (57, 50))])
def test_kazuto_checkpoints_give_its_logits(tmp_path, msc, v1, size):
    torch.manual_seed(0)
    reference = KazutoDeepLabV2(num_classes=5, v1=v1).eval()
    randomise_batchnorm(reference)
    state = reference.state_dict()
    if not msc:  # its converted init models are saved without the MSC wrapper
        state = {k.removeprefix("base."): v for k, v in state.items()}
    torch.save(state, tmp_path / "deeplabv2_resnet101_msc.pth")
    model = load_model(tmp_path / "deeplabv2_resnet101_msc.pth")
    assert model.meta.arch == ("deeplabv3-resnet101-cascade" if v1 else "deeplabv2-resnet101")
    rgb = torch.rand(1, 3, *size)
    with torch.no_grad():
        theirs = F.interpolate(reference(kazuto_input(rgb)), size=size, mode="bilinear", align_corners=False)
        ours = model(our_input(rgb, model.meta))
    assert ours.shape == theirs.shape == (1, 5, *size)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4
    info = CliRunner().invoke(main, ["info", str(tmp_path / "deeplabv2_resnet101_msc.pth")])
    assert "kazuto1011/deeplab-pytorch" in info.output and "BGR input reordered to RGB" in info.output


def test_the_caffe_resnet_options_matter(tmp_path):
    """Without the stride on the 1x1 conv and the ceil-mode pool the logits differ."""
    torch.manual_seed(0)
    reference = KazutoDeepLabV2(num_classes=3).eval()
    torch.save(reference.state_dict(), tmp_path / "k.pth")
    rgb = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        theirs = F.interpolate(reference(kazuto_input(rgb)), size=(64, 64), mode="bilinear", align_corners=False)
        for wrong in ({"stride_in_1x1": False}, {"stem_ceil_mode": False}):
            model = load_model(tmp_path / "k.pth", **wrong)
            ours = model(our_input(rgb, model.meta))
            assert ((ours - theirs).abs().max() / theirs.abs().max()).item() > 1e-2


def test_convert_keeps_a_peer_checkpoint_and_its_normalisation(tmp_path):
    torch.manual_seed(0)
    reference = KazutoDeepLabV2(num_classes=3).eval()
    torch.save(reference.state_dict(), tmp_path / "k.pth")
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "k.pth"), str(tmp_path / "k.safetensors")])
    assert result.exit_code == 0, result.output
    original, converted = load_model(tmp_path / "k.pth"), load_model(tmp_path / "k.safetensors")
    assert converted.meta.mean == original.meta.mean and converted.meta.std == original.meta.std
    assert converted.meta.config == original.meta.config
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(original(x), converted(x))
