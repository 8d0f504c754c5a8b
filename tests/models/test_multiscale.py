import pytest
import torch

from deeplab import MultiScale, build_model
from deeplab.models import MultiScaleOutput


@pytest.fixture(scope="module")
def model():
    return build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.5).eval()


def test_eval_returns_max_of_scales_at_input_size(model):
    msc = MultiScale(model, scales=(1.0, 0.75, 0.5)).eval()
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        fused = msc(x)
        half = model(torch.nn.functional.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False))
        half = torch.nn.functional.interpolate(half, size=(33, 47), mode="bilinear", align_corners=False)
        full = model(x)
    assert fused.shape == (1, 3, 33, 47)
    assert (fused >= full - 1e-6).all() and (fused >= half - 1e-6).all()
    with torch.no_grad():
        assert torch.equal(MultiScale(model, scales=(1.0,)).eval()(x), full)


def test_training_returns_per_scale_and_fused(model):
    msc = MultiScale(model, scales=(1.0, 0.5), fusion="mean").train()
    out = msc(torch.randn(2, 3, 33, 47))
    model.eval()
    assert isinstance(out, MultiScaleOutput) and len(out.per_scale) == 2
    assert all(o.shape == (2, 3, 33, 47) for o in out.per_scale)
    assert torch.allclose(out.fused, (out.per_scale[0] + out.per_scale[1]) / 2)
    assert msc.meta is model.meta


def test_bad_arguments():
    with pytest.raises(ValueError, match="fusion"):
        MultiScale(torch.nn.Identity(), fusion="median")
    with pytest.raises(ValueError, match="scales"):
        MultiScale(torch.nn.Identity(), scales=())
