import pytest
import torch

from deeplab import load_model
from tv import randomise_batchnorm


@pytest.mark.parametrize("aux", [False, True])
@pytest.mark.parametrize("depth", [50, pytest.param(101, marks=pytest.mark.slow)])
def test_torchvision_deeplabv3_gives_the_same_logits(tmp_path, depth, aux, tv):
    torch.manual_seed(depth)
    factory = getattr(tv.models.segmentation, f"deeplabv3_resnet{depth}")
    reference = factory(weights=None, weights_backbone=None, num_classes=5, aux_loss=aux).eval()
    randomise_batchnorm(reference)
    torch.save(reference.state_dict(), tmp_path / "tv.pth")
    model = load_model(tmp_path / "tv.pth")
    assert model.meta.arch == f"deeplabv3-resnet{depth}" and model.meta.config["aux"] == aux
    x = torch.randn(1, 3, 37, 45)
    with torch.no_grad():
        theirs, ours = reference(x), model(x, return_aux=True)
    assert set(ours) == set(theirs)
    for key in theirs:
        assert (ours[key] - theirs[key]).abs().max() <= 1e-4 * theirs[key].abs().max()
    if aux:
        assert load_model(tmp_path / "tv.pth", aux=False).aux_classifier is None
