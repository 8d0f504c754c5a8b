"""mmsegmentation DeepLabV3/V3+ checkpoints against a reimplementation of its forward (tests/peers.py)."""

import pytest
import torch

from deeplab import load_model
from peers import MMSegDeepLab
from tv import randomise_batchnorm


@pytest.mark.parametrize("plus, aux", [(False, True), (True, False)])
def test_mmseg_checkpoints_give_its_logits(tmp_path, tv, plus, aux):
    torch.manual_seed(0)
    reference = MMSegDeepLab(tv, plus, 50, num_classes=4, aux=aux).eval()
    randomise_batchnorm(reference)
    meta = {"dataset_meta": {"classes": ["a", "b", "c", "d"], "palette": [[1, 2, 3]] * 4}, "seed": 0}
    torch.save({"meta": meta, "state_dict": reference.state_dict()}, tmp_path / "deeplabv3_r50-d8.pth")
    model = load_model(tmp_path / "deeplabv3_r50-d8.pth")
    assert model.meta.arch == f"deeplabv3{'plus' if plus else ''}-resnet50"
    assert model.meta.classes == ["a", "b", "c", "d"] and model.meta.palette[0] == (1, 2, 3)
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        theirs, ours = reference(x), model(x, return_aux=True)
    if not aux:
        theirs = {"out": theirs}
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key].shape == (1, 4, 65, 81)
        assert ((ours[key] - theirs[key]).abs().max() / theirs[key].abs().max()).item() < 1e-4


def test_the_mmseg_options_matter(tmp_path, tv):
    """Without the image-pooling-first order or the deep stem the weights give other logits."""
    torch.manual_seed(0)
    reference = MMSegDeepLab(tv, False, 50, num_classes=3).eval()
    torch.save({"meta": {}, "state_dict": reference.state_dict()}, tmp_path / "m.pth")
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        theirs = reference(x)
        ours = load_model(tmp_path / "m.pth", pooling_first=False)(x)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() > 1e-3
