import html
import json
import re
from importlib import resources
from pathlib import Path

import pytest
import torch

import deeplab
from deeplab.apps.demo import format_table, run_demo, shipped_weights
from deeplab.data.shapes import ShapesDataset
from deeplab.models import save_model


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    data = ShapesDataset("val", 1)
    model = deeplab.build_model("deeplabv3plus-mobilenetv2", num_classes=len(data.classes), width_mult=0.25)
    model.meta.classes, model.meta.palette = list(data.classes), [tuple(c) for c in data.palette]
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_model(path, model)
    return path


def test_demo_writes_a_report_whose_pictures_exist(tmp_path, tiny_checkpoint, monkeypatch):
    from deeplab.apps import demo

    monkeypatch.setattr(demo, "REAL_STRATEGIES", {"single scale": {}, "CRF": {"crf": True}})  # fewer passes
    lines = []
    results = run_demo(tmp_path, num_images=2, weights=tiny_checkpoint, panels=1, echo=lines.append)
    assert [r["label"] for r in results] == ["single scale", "multi-scale + flip", "multi-scale + flip + CRF"]
    assert all(0.0 <= r["miou"] <= 1.0 and r["seconds_per_image"] > 0 for r in results)
    page = (tmp_path / "index.html").read_text()
    images = re.findall(r'src="([^"]+)"', page)
    assert len(images) >= 5 + 4  # one example row (image, truth, 3 strategies) and the plots
    assert all((tmp_path / src).is_file() for src in images)
    assert any(line.startswith("strategy") for line in lines)
    # the real photos come first: the shipped real weights on the shipped photos, scored against their truth
    real = next(k for k, line in enumerate(lines) if line.startswith("5 real photos with ground truth"))
    assert lines[real + 1].startswith("strategy") and real < lines.index(format_table(results))
    bird = re.search(r"bird IoU.*?(0\.\d+)", "\n".join(lines))
    assert bird is not None and float(bird.group(1)) >= 0.90
    assert (tmp_path / "hero.png").is_file() and page.index("Real photos") < page.index("Built-in scenes")
    # the papers' claims as shipped (benchmarks/paper_claims.py): mean of the seeds and how many agree
    claims = json.loads((Path(str(resources.files("deeplab"))) / "assets" / "claims.json").read_text())
    assert html.escape("The papers' claims, measured in the small") in page and html.escape(claims["recipe"]) in page
    first = claims["claims"][0]
    mean = ", ".join(f"{k} {100 * sum(v) / len(v):.2f}" for k, v in first["ours"].items())
    assert mean in page and first["seeds"] in ("0/2", "1/2", "2/2")


def test_format_table_has_one_row_per_strategy():
    trimap = {"widths": [2, 5, 10, 20], "miou": [0.1, 0.2, 0.3, 0.4], "pixel_accuracy": [0.5] * 4}
    result = {"label": "x", "miou": 0.5, "pixel_accuracy": 0.9, "trimap": trimap, "seconds_per_image": 0.25}
    rows = format_table([result, {**result, "label": "y"}]).splitlines()
    assert len(rows) == 4 and rows[2].split()[:3] == ["x", "50.00", "90.00"]
    assert rows[2].split()[-1] == "0.250"


def test_shipped_model_is_in_the_package():
    path = shipped_weights()
    if not path.exists():
        pytest.fail(f"{path} is missing: train it with `deeplab train --config configs/shapes.yaml`")
    model = deeplab.load_model(path)
    assert model.meta.classes == list(ShapesDataset("val", 1).classes)
    assert path.stat().st_size <= 15 * 2**20


@pytest.mark.slow
def test_shipped_model_quality_and_what_the_crf_adds():
    """The figures the README reports, on the first 20 held-out scenes (200 in the README)."""
    from deeplab import DenseCRF, Segmenter
    from deeplab.evaluation import evaluate

    model = deeplab.load_model(shipped_weights())
    data = ShapesDataset("val", 20)
    multi = {"scales": (0.75, 1.0, 1.25, 1.5), "flip": True}
    single = evaluate(Segmenter(model), data, progress=False)
    ms = evaluate(Segmenter(model, **multi), data, progress=False)
    crf = evaluate(Segmenter(model, crf=DenseCRF(), **multi), data, progress=False)
    assert single["miou"] > 0.70
    assert ms["miou"] > single["miou"]  # multi-scale + flip adds
    assert crf["miou"] > ms["miou"]  # and the CRF adds to it
    band = crf["trimap"]["widths"].index(2)
    assert crf["trimap"]["miou"][band] > ms["trimap"]["miou"][band]  # most of all near the boundaries
