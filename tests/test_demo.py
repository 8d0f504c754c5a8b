import re
from pathlib import Path

import numpy as np
import pytest
import torch

import deeplab
from deeplab.data.shapes import ShapesDataset
from deeplab.demo import coarse_scores, format_table, run_demo, shipped_weights
from deeplab.weights import save_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    data = ShapesDataset("val", 1)
    model = deeplab.build_model("deeplabv3plus-mobilenetv2", num_classes=len(data.classes), width_mult=0.25)
    model.meta.classes, model.meta.palette = list(data.classes), [tuple(c) for c in data.palette]
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model)
    return path


def test_demo_writes_a_report_whose_pictures_exist(tmp_path, tiny_checkpoint):
    lines = []
    results = run_demo(tmp_path, num_images=2, weights=tiny_checkpoint, panels=1, echo=lines.append)
    assert [r["label"] for r in results] == ["single scale", "multi-scale + flip", "multi-scale + flip + CRF"]
    assert all(0.0 <= r["miou"] <= 1.0 and r["seconds_per_image"] > 0 for r in results)
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'src="([^"]+)"', page)
    assert len(images) >= 5 + 4  # one example row (image, truth, 3 strategies) and the plots
    assert all((tmp_path / src).is_file() for src in images)
    assert any(line.startswith("strategy") for line in lines)


def test_format_table_has_one_row_per_strategy():
    trimap = {"widths": [2, 5, 10, 20], "miou": [0.1, 0.2, 0.3, 0.4], "pixel_accuracy": [0.5] * 4}
    result = {"label": "x", "miou": 0.5, "pixel_accuracy": 0.9, "trimap": trimap, "seconds_per_image": 0.25}
    rows = format_table([result, {**result, "label": "y"}]).splitlines()
    assert len(rows) == 4 and rows[2].split()[:3] == ["x", "50.00", "90.00"]
    assert rows[2].split()[-1] == "0.250"


def test_coarse_scores_are_blurred_probabilities_that_mostly_agree():
    truth = np.zeros((64, 80), dtype=np.int64)
    truth[16:48, 20:60] = 3
    probs = coarse_scores(truth, 5)
    assert probs.shape == (5, 64, 80)
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    agree = (probs.argmax(0) == truth).mean()
    assert agree > 0.8
    assert probs.max(0).min() < 0.9  # not one-hot: evidence is soft near boundaries


def test_shipped_model_is_in_the_package():
    path = shipped_weights()
    if not path.exists():
        pytest.fail(f"{path} is missing: train it with `deeplab train --config configs/shapes.yaml`")
    model = deeplab.load_model(path)
    assert model.meta.classes == list(ShapesDataset("val", 1).classes)
    assert path.stat().st_size <= 15 * 2**20
