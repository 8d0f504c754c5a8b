"""Plots: every figure is written as a real PNG from a log or an evaluation result."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deeplab.apps.plots import plot_evaluation, plot_training_curves, plot_trimap


def _result(label: str, offset: float) -> dict:
    widths = list(range(1, 11))
    return {
        "label": label,
        "classes": ["background", "circle", "square"],
        "per_class_iou": {"background": 0.9, "circle": 0.5, "square": None},
        "miou": 0.7,
        "confusion_matrix": [[90, 10, 0], [5, 5, 0], [0, 0, 0]],
        "trimap": {"widths": widths, "miou": [min(1.0, 0.3 + offset + 0.05 * w) for w in widths]},
    }


def _is_png(path) -> tuple[int, int]:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_training_curves(tmp_path):
    log = tmp_path / "log.csv"
    rows = ["iteration,loss,lr,val_miou"] + [f"{i},{3 / i},{0.01 * (1 - i / 30) ** 0.9}," for i in range(1, 30)]
    rows[10] = rows[10] + "0.4"  # validation rows carry val_miou
    log.write_text("\n".join(rows + ["30,0.1,0.0,0.6"]) + "\n")
    paths = plot_training_curves(log, tmp_path / "plots")
    assert [p.name for p in paths] == ["loss.png", "miou.png"]
    assert all(_is_png(p)[0] > 200 for p in paths)


def test_training_curves_without_validation(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("iteration,loss,lr,val_miou\n1,2.0,0.1,\n2,1.5,0.05,\n")
    assert [p.name for p in plot_training_curves(log, tmp_path)] == ["loss.png"]


def test_evaluation_plots(tmp_path):
    paths = plot_evaluation(_result("a", 0.0), tmp_path)
    assert sorted(p.name for p in paths) == ["class_iou.png", "confusion_matrix.png", "trimap.png"]
    for p in paths:
        _is_png(p)


def test_trimap_several_runs(tmp_path):
    path = plot_trimap([_result("no CRF", 0.0), _result("CRF", 0.1)], tmp_path / "t.png")
    two = np.asarray(Image.open(path).convert("RGB"))
    one = np.asarray(Image.open(plot_trimap([_result("no CRF", 0.0)], tmp_path / "o.png")).convert("RGB"))
    assert two.shape == one.shape and (two != one).any()
    bad = _result("x", 0)
    del bad["trimap"]
    with pytest.raises(ValueError, match="no trimap"):
        plot_trimap([bad], tmp_path / "x.png")
