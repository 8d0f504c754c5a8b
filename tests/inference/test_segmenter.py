import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from deeplab.inference import Segmenter, fold_batchnorm, prepare_model
from deeplab.inference import segmenter as inference
from tiny_model import TinyNet, tiny_image


def _normalised(model, rgb):
    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255
    mean, std = torch.tensor(model.meta.mean), torch.tensor(model.meta.std)
    return ((x - mean[:, None, None]) / std[:, None, None])[None]


def _logits(model, x, scale, flip=False):
    h, w = x.shape[-2:]
    xs = (
        F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
        if scale != 1
        else x
    )
    xs = xs.flip(-1) if flip else xs
    with torch.no_grad():
        out = model(xs)
    out = out.flip(-1) if flip else out
    return F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)[0]


@pytest.fixture(scope="module")
def model():
    return TinyNet()


@pytest.fixture(scope="module")
def image():
    return tiny_image(40, 56)


def test_max_fusion_is_elementwise_max_of_single_scale_logits(model, image):
    scales = (1.0, 0.75, 0.5)
    pred = Segmenter(model, scales=scales, fusion="max", optimize=False)(image)
    x = _normalised(model, image)
    expected = torch.stack([_logits(model, x, s) for s in scales]).amax(0).softmax(0)
    np.testing.assert_allclose(pred.probs, expected.numpy(), atol=1e-5)
    assert pred.labels.shape == image.shape[:2] and pred.labels.dtype == np.int64
    np.testing.assert_array_equal(pred.labels, expected.argmax(0).numpy())


def test_mean_fusion_averages_probabilities(model, image):
    scales = (0.5, 1.25)
    pred = Segmenter(model, scales=scales, fusion="mean", optimize=False)(image)
    x = _normalised(model, image)
    expected = torch.stack([_logits(model, x, s).softmax(0) for s in scales]).mean(0)
    np.testing.assert_allclose(pred.probs, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(pred.probs.sum(0), 1.0, atol=1e-5)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_flip_averaging_equals_manual_computation(model, image, fusion):
    pred = Segmenter(model, scales=(1.0, 0.75), flip=True, fusion=fusion, optimize=False)(image)
    x = _normalised(model, image)
    space = (lambda t: t.softmax(0)) if fusion == "mean" else (lambda t: t)
    per_scale = [(space(_logits(model, x, s)) + space(_logits(model, x, s, flip=True))) / 2 for s in (1.0, 0.75)]
    fused = torch.stack(per_scale)
    expected = fused.mean(0) if fusion == "mean" else fused.amax(0).softmax(0)
    np.testing.assert_allclose(pred.probs, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_tiled_matches_untiled(model, fusion):
    # 64x96 at scales 1, .75, .5 keeps every scaled size on the output-stride grid: near exact
    image = tiny_image(64, 96, seed=3)
    kw = dict(scales=(1.0, 0.75, 0.5), flip=True, fusion=fusion, optimize=False)
    whole = Segmenter(model, **kw)(image)
    tiled = Segmenter(model, tile=(40, 48), overlap=1 / 3, **kw)(image)
    assert np.abs(tiled.probs - whole.probs).mean() < 1e-3
    assert np.abs(tiled.probs - whole.probs).max() < 0.02
    np.testing.assert_array_equal(tiled.labels, whole.labels)


def test_tiled_matches_untiled_off_grid_scales(model):
    image = tiny_image(70, 90, seed=3)
    whole = Segmenter(model, scales=(1.25, 0.6), optimize=False)(image)
    tiled = Segmenter(model, scales=(1.25, 0.6), tile=40, optimize=False)(image)
    assert np.abs(tiled.probs - whole.probs).mean() < 0.01
    assert (tiled.labels == whole.labels).mean() > 0.99


def test_tiled_resampling_is_exact_for_a_pointwise_model():
    class Pointwise(nn.Module):
        output_stride = 1

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.conv(x)

    model, image = Pointwise(), tiny_image(50, 70, seed=1)
    for scale in (0.5, 0.75, 1.0, 1.75):
        whole = Segmenter(model, scales=(scale,), optimize=False)(image)
        tiled = Segmenter(model, scales=(scale,), tile=(24, 32), optimize=False)(image)
        np.testing.assert_allclose(tiled.probs, whole.probs, atol=1e-5)


def test_tiles_bound_the_network_input_and_cover_the_image(model, monkeypatch):
    boxes, inputs = [], []
    fuse, run = Segmenter._fuse, Segmenter._run
    monkeypatch.setattr(Segmenter, "_fuse", lambda self, rgb, box=None: boxes.append(box) or fuse(self, rgb, box))
    monkeypatch.setattr(Segmenter, "_run", lambda self, x: inputs.append(x.shape[-2:]) or run(self, x))
    pred = Segmenter(model, scales=(1.0, 1.5), tile=32, overlap=0.25)(tiny_image(50, 90))
    assert pred.probs.shape == (4, 50, 90) and len(boxes) == 2 * 4
    assert all(b - t == 32 and r - left == 32 for t, b, left, r in boxes)
    assert max(max(shape) for shape in inputs) <= 1.5 * 32 + 2 * 4  # window + grid alignment


def test_large_images_are_tiled_automatically(model, monkeypatch):
    monkeypatch.setattr(inference, "DEFAULT_TILE", (24, 24))
    image = tiny_image(40, 56)
    auto = Segmenter(model, max_pixels=1000)(image)
    explicit = Segmenter(model, tile=24)(image)
    np.testing.assert_array_equal(auto.probs, explicit.probs)


def test_folded_channels_last_model_equals_plain(model):
    fast = prepare_model(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fast.meta == model.meta and fast.output_stride == 4
    x = torch.randn(2, 3, 33, 47)
    with torch.no_grad():
        np.testing.assert_allclose(fast(x.contiguous(memory_format=torch.channels_last)), model(x), atol=1e-5)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # original untouched


def test_folding_falls_back_to_registration_order_when_untraceable():
    class Untraceable(TinyNet):
        def forward(self, x, return_aux=False):
            if x.sum() > -1e9:  # data-dependent control flow defeats torch.fx
                return super().forward(x)
            return x

    model = Untraceable()
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        np.testing.assert_allclose(folded(x), model(x), atol=1e-5)


def test_fast_path_segmenter_equals_plain(model, image):
    plain = Segmenter(model, scales=(1.0, 0.5), flip=True, optimize=False)(image)
    fast = Segmenter(model, scales=(1.0, 0.5), flip=True)(image)
    np.testing.assert_allclose(fast.probs, plain.probs, atol=1e-5)


def test_bf16_is_close_to_fp32(model, image):
    fp32 = Segmenter(model)(image)
    bf16 = Segmenter(model, precision="bf16")(image)
    assert bf16.probs.dtype == np.float32
    assert np.abs(bf16.probs - fp32.probs).max() < 0.05
    assert (bf16.labels == fp32.labels).mean() > 0.95


def test_presets_name_the_paper_strategies(model):
    v2 = Segmenter.from_preset(model, "deeplabv2")
    assert (v2.scales, v2.fusion, v2.flip) == ((1.0, 0.75, 0.5), "max", False)
    v3 = Segmenter.from_preset(model, "deeplabv3", flip=False)
    assert v3.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) and v3.fusion == "mean" and not v3.flip
    with pytest.raises(ValueError, match="unknown preset 'v9'"):
        Segmenter.from_preset(model, "v9")


def test_crf_refines_the_fused_probabilities(model, image):
    calls = []

    def crf(rgb, probs):
        calls.append((rgb.shape, probs.copy()))
        return probs[::-1].copy()  # reverse the classes: visible in the labels

    plain = Segmenter(model)(image)
    refined = Segmenter(model, crf=crf)(image)
    assert calls[0][0] == image.shape
    np.testing.assert_allclose(calls[0][1], plain.probs, atol=1e-6)
    np.testing.assert_array_equal(refined.labels, 3 - plain.labels)


def test_accepts_pil_gray_and_rgba(model, image):
    expected = Segmenter(model)(image).labels
    seg = Segmenter(model)
    np.testing.assert_array_equal(seg(Image.fromarray(image)).labels, expected)
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(seg(rgba).labels, expected)
    assert seg(image[..., 0]).labels.shape == image.shape[:2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"scales": (1.0, 0.0)}, "scales must be positive"),
        ({"scales": (-0.5,)}, "scales must be positive"),
        ({"tile": 3}, "smaller than the model's output stride 4"),
        ({"fusion": "median"}, "fusion must be"),
        ({"precision": "fp8"}, "precision must be"),
        ({"overlap": 1.0}, "overlap must lie"),
        ({"backend": "tensorrt"}, "backend must be"),
    ],
)
def test_bad_arguments_give_clear_errors(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Segmenter(model, **kwargs)


def test_images_are_normalised_as_everywhere_else(model, tmp_path):
    """One normaliser (imageio.as_rgb) for the Segmenter and the CRF: files, PIL, gray, float."""
    from PIL import Image

    seg = Segmenter(model)
    image = tiny_image(24, 32, seed=5)
    expected = seg(image).labels
    Image.fromarray(image).save(tmp_path / "photo.png")
    for same in (str(tmp_path / "photo.png"), tmp_path / "photo.png", Image.fromarray(image), image.astype(np.float32)):
        np.testing.assert_array_equal(seg(same).labels, expected)
    with pytest.raises(ValueError, match="HxWx3"):
        seg(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(ValueError, match="numbers"):
        seg(np.array([["photo.png"]]))


def test_real_model_fast_path_agrees_with_plain():
    import deeplab

    torch.manual_seed(0)
    model = deeplab.build_model("deeplabv3-mobilenetv2", num_classes=5).eval()
    image = tiny_image(64, 80, seed=5)
    kw = dict(scales=(1.0, 0.5), flip=True, fusion="max")
    plain = Segmenter(model, optimize=False, **kw)(image)
    fast = Segmenter(model, **kw)(image)
    np.testing.assert_allclose(fast.probs, plain.probs, atol=1e-4)
    assert (fast.labels == plain.labels).mean() > 0.999


@pytest.mark.slow
def test_compiled_model_equals_plain(model, image):
    plain = Segmenter(model, optimize=False)(image)
    compiled = Segmenter(model, compile=True)(image)
    np.testing.assert_allclose(compiled.probs, plain.probs, atol=1e-4)


@pytest.mark.parametrize("fusion, flip", [("mean", True), ("max", False)])
def test_predict_batch_equals_one_at_a_time(model, fusion, flip):
    seg = Segmenter(model, scales=(1.0, 0.75), fusion=fusion, flip=flip, max_pixels=3000)
    images = [tiny_image(40, 56, seed=1), tiny_image(33, 47, seed=2), tiny_image(40, 56, seed=3), tiny_image(60, 70)]
    batch = seg.predict_batch(images)  # two of one size run together; the 60x70 one needs tiles
    for image, got in zip(images, batch):
        alone = seg(image)
        assert got.probs.shape == alone.probs.shape
        assert np.abs(got.probs - alone.probs).max() < 1e-5
        assert (got.labels == alone.labels).mean() > 0.999


def test_cpu_batches_run_in_cache_sized_forward_passes(model, monkeypatch):
    """On the CPU a batch is split into forward passes of at most CPU_FORWARD_PIXELS network-input
    pixels at each scale (flips included), since bigger passes spill the caches; results unchanged."""
    seg = Segmenter(model, scales=(1.0, 0.5), flip=True)
    images = [tiny_image(40, 56, seed=s) for s in range(5)]
    whole = seg.predict_batch(images)
    monkeypatch.setattr(inference, "CPU_FORWARD_PIXELS", 2 * 2 * 40 * 56)  # two images and their flips at scale 1
    batches = []
    seg.model.register_forward_pre_hook(lambda module, args: batches.append(len(args[0])))
    split = seg.predict_batch(images)
    assert batches == [4, 4, 2, 10]  # scale 1: images (0, 1), (2, 3), (4,); scale 0.5: all; flipped too
    for a, b in zip(whole, split):
        assert np.abs(a.probs - b.probs).max() < 1e-5


@pytest.mark.parametrize("overlap", [True, None])
def test_predict_batches_overlaps_the_crf_and_keeps_the_order(model, overlap):
    """With overlap the CRF of a batch runs on another thread while the network computes the next
    one (by default only off the CPU); the results come back in order and equal predict_batch's."""
    import threading

    from deeplab.crf import DenseCRF

    crf = DenseCRF(iterations=3)
    threads = set()

    def spy(rgb, probs):
        threads.add(threading.current_thread().name)
        return crf(rgb, probs)

    seg = Segmenter(model, crf=spy)
    batches = [[tiny_image(32, 40, seed=i), tiny_image(36, 28, seed=i + 10)] for i in range(4)]
    streamed = list(seg.predict_batches(batches, overlap=overlap))
    assert len(streamed) == 4 and threads
    assert all(t.startswith("crf") == bool(overlap) for t in threads)
    for batch, got in zip(batches, streamed):
        for image, prediction in zip(batch, got):
            alone = seg(image)
            assert np.array_equal(prediction.labels, alone.labels)
            np.testing.assert_allclose(prediction.probs, alone.probs, atol=1e-6)


def test_auto_backend_falls_back_to_torch(model, monkeypatch):
    from deeplab.inference import backends, openvino

    monkeypatch.setattr(openvino, "openvino_available", lambda: False)
    assert Segmenter(model, backend="auto").backend == "torch"
    assert Segmenter(model).backend == "torch"  # the default
    assert backends.choose_backend("auto", torch.device("cpu"), "fp16", True, False) == "torch"


def test_argmax_is_torchs_with_ties_to_the_first_class():
    probs = torch.rand(7, 33, 29)
    probs[:, 0, :5] = 0.5  # every class tied: class 0
    probs[3:5, 1, :5] = 2.0  # classes 3 and 4 tied at the top: class 3
    assert torch.equal(inference._argmax(probs), probs.argmax(0))
    assert (inference._argmax(probs)[0, :5] == 0).all() and (inference._argmax(probs)[1, :5] == 3).all()


def test_softmax_of_channels_last_and_contiguous_logits_agree():
    """The network's channels_last logits take the H,W,C path; both give C-contiguous probabilities."""
    logits = torch.randn(1, 5, 70, 41) * 10
    channels_last = inference._softmax(logits.contiguous(memory_format=torch.channels_last)[0], rows=16)
    plain = inference._softmax(logits[0].clone(), rows=16)
    assert channels_last.is_contiguous() and plain.is_contiguous()
    torch.testing.assert_close(channels_last, logits[0].softmax(0), rtol=0, atol=1e-6)
    torch.testing.assert_close(plain, logits[0].softmax(0), rtol=0, atol=1e-6)


def test_read_only_images_raise_no_torch_warning(model):
    """PIL gives read-only arrays; torch warns about wrapping those (once per process, on the user's screen)."""
    import warnings

    image = tiny_image(40, 56, seed=4)
    image.setflags(write=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="The given NumPy array is not writable")
        got = Segmenter(model, backend="torch")(image)
    image = image.copy()
    assert np.array_equal(got.labels, Segmenter(model, backend="torch")(image).labels)


def test_outputs_that_are_not_finite_fail_the_image(tmp_path):
    """Weights that overflow give NaN probabilities: predict names the image, evaluate too; no labels."""
    from click.testing import CliRunner
    from PIL import Image

    from deeplab.apps.cli import main
    from deeplab.data.shapes import ShapesDataset
    from deeplab.evaluation import evaluate
    from deeplab.models import build_model, save_model

    torch.manual_seed(0)
    model = build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25).eval()
    with torch.no_grad():
        model.classifier[2].weight.fill_(1e20)  # finite weights whose logits overflow to infinity
        model.classifier[-1].weight.fill_(3e38)
    for probs in (True, False):  # the probabilities, or the labels only
        with pytest.raises(ValueError, match="outputs are not finite"):
            Segmenter(model, backend="torch")(tiny_image(40, 56), probs=probs)
    with pytest.raises(ValueError, match="val_00000 of the data set: the network's outputs are not finite"):
        evaluate(Segmenter(model, backend="torch"), ShapesDataset("val", 2), progress=False)
    save_model(tmp_path / "huge.pt", model)
    Image.fromarray(tiny_image(40, 56)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main,
        [
            "predict",
            "--weights",
            str(tmp_path / "huge.pt"),
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "out"),
            "--backend",
            "torch",
        ],
    )
    assert result.exit_code == 1 and f"{tmp_path / 'a.png'}: the network's outputs are not finite" in result.output
    assert not (tmp_path / "out" / "a.png").exists()


@pytest.mark.parametrize("kwargs", [{}, {"scales": (1.0, 0.5)}, {"flip": True}, {"tile": 32}])
def test_labels_only_are_the_labels_of_the_probabilities(model, kwargs):
    """probs=False gives predict_batch's labels without probabilities; in the plain case (one scale,
    no flip, no tiles) from the argmax of the logits, never through the softmax."""
    images = [tiny_image(40, 56, seed=k) for k in range(3)] + [tiny_image(48, 40, seed=5)]
    seg = Segmenter(model, backend="torch", **kwargs)
    full = seg.predict_batch(images)
    plain = seg.labels_only(images)
    if plain:  # never through the full-size probabilities
        seg.probabilities = lambda *args: pytest.fail("computed probabilities")
    labels_only = seg.predict_batch(images, probs=False)
    assert all(p.probs is None for p in labels_only)
    for a, b in zip(full, labels_only):
        assert b.labels.dtype == np.int64 and np.array_equal(a.labels, b.labels)
    assert plain == (kwargs == {})
    assert torch.equal(torch.tensor(seg(images[0], probs=False).labels), torch.tensor(full[0].labels))
