import math

import numpy as np
import pytest
import torch

from deeplab.metrics import ConfusionMatrix, TrimapMetric, boundary_distance


def test_confusion_matrix_counts_and_scores_by_hand():
    target = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    # rows = gt, cols = pred; the ignore pixel (pred 2) is not counted
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    r = cm.compute()
    iou = [1 / 3, 3 / 4, 1 / 2]  # tp / (gt + pred - tp)
    np.testing.assert_allclose(r["per_class_iou"], iou)
    assert r["miou"] == pytest.approx(sum(iou) / 3)
    assert r["pixel_accuracy"] == pytest.approx(5 / 7)
    assert r["mean_class_accuracy"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert r["fw_iou"] == pytest.approx(2 / 7 * iou[0] + 3 / 7 * iou[1] + 2 / 7 * iou[2])


def test_absent_class_is_nan_and_left_out_of_means():
    cm = ConfusionMatrix.from_matrix(np.array([[4, 0, 0], [0, 0, 0], [1, 0, 5]]))
    r = cm.compute()
    assert math.isnan(r["per_class_iou"][1])
    assert r["miou"] == pytest.approx((4 / 5 + 5 / 6) / 2)
    assert r["mean_class_accuracy"] == pytest.approx((1 + 5 / 6) / 2)


def test_torch_input_merge_and_from_matrix_agree():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, size=(2, 8, 8))
    p = rng.integers(0, 4, size=(2, 8, 8))
    whole = ConfusionMatrix(4)
    whole.update(torch.from_numpy(p), torch.from_numpy(t).to(torch.uint8))
    a, b = ConfusionMatrix(4), ConfusionMatrix(4)
    a.update(p[0], t[0])
    b.update(p[1], t[1])
    assert np.array_equal(a.merge(b).matrix, whole.matrix)
    summed = ConfusionMatrix.from_matrix(torch.from_numpy(a.matrix))
    assert summed.compute()["miou"] == whole.compute()["miou"]


def test_bad_values_and_shapes_are_clear_errors():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match=r"target has values \[7\]"):
        cm.update(np.zeros((2, 2)), np.full((2, 2), 7))
    with pytest.raises(ValueError, match="differ in shape"):
        cm.update(np.zeros((2, 2)), np.zeros((2, 3)))


def _square(size=64, side=20, top=22):
    t = np.zeros((size, size), dtype=np.uint8)
    t[top : top + side, top : top + side] = 1
    return t


def test_boundary_distance_of_a_square():
    t = _square()
    d = boundary_distance(t)
    assert d[22, 30] == 0 and d[21, 30] == 0  # inner and outer ring are boundary pixels
    assert d[21, 21] == 0  # 8-neighbour corner
    assert d[32, 32] == 9  # centre: 10 px from the inner ring at row 22/41
    assert np.isinf(boundary_distance(np.zeros((4, 4)))).all()


@pytest.mark.parametrize("w", [1, 2, 5, 9])
def test_trimap_band_pixel_counts_on_a_square(w):
    side = 20
    t = _square(side=side)
    # object pixels in the band: all but the inner square of side (side - 2w)
    inside = side**2 - max(side - 2 * w, 0) ** 2
    # background: 4 strips of w rows along the sides + 4 quarter discs around the outer corners
    corner = sum(1 for a in range(w) for b in range(w) if a * a + b * b < w * w)
    outside = 4 * side * w + 4 * corner
    metric = TrimapMetric(2, widths=[w])
    metric.update(t, t)  # perfect prediction: IoU 1 everywhere
    assert metric.counts.sum() == inside + outside
    assert np.cumsum(metric.counts, 0)[w - 1].diagonal().tolist() == [outside, inside]
    r = metric.compute()
    assert r["widths"] == [w] and r["miou"] == [1.0] and r["pixel_accuracy"] == [1.0]


def test_trimap_scores_errors_near_the_boundary_only():
    t = _square()
    pred = t.copy()
    pred[22, 22:42] = 0  # wrong top row of the object (inside the 1 px band)
    pred[0, 0] = 1  # far away error: outside every band up to 20
    metric = TrimapMetric(2, widths=range(1, 21))
    metric.update(torch.from_numpy(pred[None]), torch.from_numpy(t[None]))
    r = metric.compute()
    band1 = 4 * 20 + 4 + (20**2 - 18**2)  # outside ring (incl. corners) + inner ring
    assert r["pixel_accuracy"][0] == pytest.approx(1 - 20 / band1)
    assert all(a < 1 for a in r["pixel_accuracy"])
    assert r["pixel_accuracy"] == sorted(r["pixel_accuracy"])  # wider bands dilute the errors


def test_trimap_never_scores_ignore_pixels():
    t = _square()
    pred = t.copy()
    pred[22, 22:42] = 0
    t[22, 22:42] = 255  # the wrong pixels are ignore in the ground truth
    metric = TrimapMetric(2, widths=[1, 3])
    metric.update(pred, t)
    assert metric.compute()["pixel_accuracy"] == [1.0, 1.0]
    assert metric.counts.sum() == np.sum((boundary_distance(t) < 3) & (t != 255))
