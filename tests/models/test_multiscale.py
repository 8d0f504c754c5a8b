import pytest
import torch

from deeplab import MultiScale, Segmenter, build_model


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
    assert set(out) == {"out", "per_scale"} and len(out["per_scale"]) == 2
    assert all(o.shape == (2, 3, 33, 47) for o in out["per_scale"])
    probs = [o.softmax(1) for o in out["per_scale"]]
    assert torch.allclose(out["out"].exp(), (probs[0] + probs[1]) / 2, atol=1e-6)  # log of the mean probability
    assert msc.meta is model.meta


def test_mean_fusion_means_what_it_means_in_the_segmenter(model):
    """Training-time MSC "mean" and inference "mean" fuse the same way: the average probability."""
    image = (torch.rand(33, 47, 3) * 255).to(torch.uint8).numpy()
    seg = Segmenter(model, scales=(1.0, 0.5), fusion="mean", optimize=False)
    msc = MultiScale(model, scales=(1.0, 0.5), fusion="mean").eval()
    with torch.no_grad():
        fused = msc(seg._normalise(image))[0].exp()
    assert torch.allclose(fused, torch.from_numpy(seg(image).probs), atol=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError, match="fusion"):
        MultiScale(torch.nn.Identity(), fusion="median")
    with pytest.raises(ValueError, match="scales"):
        MultiScale(torch.nn.Identity(), scales=())
