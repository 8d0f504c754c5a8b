"""Evaluation: scores of a whole data set, the JSON result, plots and the CLI comparison."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from deeplab.apps.evaluate import format_result, read_result, write_report, write_result
from deeplab.evaluation import evaluate


class _Pairs:
    """(image, mask) pairs of random 3-class masks; `predict` returns a fixed corruption of them."""

    classes = ["bg", "a", "b"]
    ignore_index = 255

    def __init__(self, n: int = 3) -> None:
        rng = np.random.default_rng(0)
        self.masks = [rng.integers(0, 3, (12, 16)).astype(np.uint8) for _ in range(n)]
        if n:
            self.masks[0][0, :] = 255

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i):
        return np.full((12, 16, 3), i, np.uint8), self.masks[i]


class _Oracle:
    """A Segmenter stand-in: labels = ground truth with every 'b' predicted as 'a'."""

    scales, flip, fusion, crf = (1.0,), False, "mean", None

    def __init__(self, data: _Pairs) -> None:
        self.data = data

    def __call__(self, image):
        labels = self.data.masks[int(image[0, 0, 0])].astype(np.int64).copy()
        labels[labels == 2] = 1
        labels[labels == 255] = 0
        return SimpleNamespace(labels=labels)


def test_scores_match_hand_counts():
    data = _Pairs()
    result = evaluate(_Oracle(data), data, trimap_widths=range(1, 4), progress=False)
    gt = np.concatenate([m.ravel() for m in data.masks])
    valid = gt != 255
    n_bg, n_a, n_b = ((gt == c).sum() for c in range(3))
    assert result["per_class_iou"]["bg"] == 1.0
    assert result["per_class_iou"]["a"] == pytest.approx(n_a / (n_a + n_b))
    assert result["per_class_iou"]["b"] == 0.0
    assert result["miou"] == pytest.approx((1 + n_a / (n_a + n_b)) / 3)
    assert result["pixel_accuracy"] == pytest.approx((n_bg + n_a) / valid.sum())
    assert result["mean_class_accuracy"] == pytest.approx(2 / 3)
    assert np.array(result["confusion_matrix"]).sum() == valid.sum()
    assert result["trimap"]["widths"] == [1, 2, 3] and len(result["trimap"]["miou"]) == 3
    assert result["num_images"] == 3 and result["label"] == "scales 1"


def test_model_is_wrapped_in_a_segmenter():
    from tiny_model import TinyNet

    model = TinyNet(num_classes=3)
    data = _Pairs(2)
    result = evaluate(model, data, trimap_widths=None, progress=False, max_images=1)
    assert result["trimap"] is None and result["num_images"] == 1
    assert 0.0 <= result["pixel_accuracy"] <= 1.0


def test_json_round_trip_and_plots(tmp_path):
    data = _Pairs()
    result = evaluate(_Oracle(data), data, trimap_widths=range(1, 3), progress=False, label="oracle")
    result["per_class_iou"]["b"] = float("nan")
    paths = write_report(result, tmp_path)
    assert [p.name for p in paths] == ["result.json", "class_iou.png", "confusion_matrix.png", "trimap.png"]
    text = (tmp_path / "result.json").read_text()
    assert "NaN" not in text and json.loads(text)["per_class_iou"]["b"] is None
    again = read_result(tmp_path / "result.json")
    assert again["label"] == "oracle" and again["miou"] == result["miou"]
    assert "n/a" in format_result(again) and "miou" in format_result(again)


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        evaluate(_Oracle(_Pairs()), _Pairs(0))
    with pytest.raises(ValueError, match="nope.json: no such result file"):
        read_result(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ValueError, match="x.json: not a JSON result file"):
        read_result(tmp_path / "x.json")
    write_result({"a": 1}, tmp_path / "y.json")
    with pytest.raises(ValueError, match="not an evaluation result"):
        read_result(tmp_path / "y.json")


def _evaluate_worker(rank: int, world: int, port: int, args_per_rank: list, out: str) -> None:
    import os

    import torch
    from click.testing import CliRunner

    from deeplab.apps.cli import main

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    result = CliRunner().invoke(main, args_per_rank[rank])
    with open(f"{out}/rank{rank}.txt", "w") as f:
        f.write(f"{result.exit_code}\n{result.output}")


def _spawn_evaluate(tmp_path, args_per_rank: list) -> list[str]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_evaluate_worker, args=(2, port, args_per_rank, str(tmp_path)), nprocs=2)
    return [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]


def _checkpoint(path, seed: int = 0):
    import torch

    from deeplab.models import build_model, save_model

    torch.manual_seed(seed)
    save_model(path, build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25).eval())
    return str(path)


@pytest.mark.slow
def test_two_process_evaluate_equals_one_process(tmp_path):
    from click.testing import CliRunner

    from deeplab.apps.cli import main

    weights = _checkpoint(tmp_path / "m.pt")
    common = ["evaluate", "--weights", weights, "--dataset", "shapes", "--max-images", "5", "--flip"]
    single = CliRunner().invoke(main, [*common, "-o", str(tmp_path / "one")])
    assert single.exit_code == 0, single.output
    outputs = _spawn_evaluate(tmp_path, [[*common, "-o", str(tmp_path / "two")]] * 2)
    assert all(o.startswith("0\n") for o in outputs), outputs
    assert "miou" in outputs[0] and "miou" not in outputs[1]  # only rank 0 prints and writes
    one, two = (json.loads((tmp_path / d / "result.json").read_text()) for d in ("one", "two"))
    assert one == two


@pytest.mark.slow
def test_ranks_with_different_checkpoints_fail_clearly(tmp_path):
    a, b = _checkpoint(tmp_path / "a.pt", 0), _checkpoint(tmp_path / "b.pt", 1)
    args = [
        ["evaluate", "--weights", w, "--dataset", "shapes", "--max-images", "2", "-o", str(tmp_path / "o")]
        for w in (a, b)
    ]
    outputs = _spawn_evaluate(tmp_path, args)
    for out in outputs:
        assert out.startswith("1\n") and "the processes disagree on the checkpoint" in out, out


def test_batches_and_workers_give_the_same_scores():
    import torch

    from deeplab.data import ShapesDataset
    from deeplab.inference import Segmenter
    from deeplab.models import build_model

    torch.manual_seed(0)
    model = build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25).eval()
    data = ShapesDataset("val", 5, size=64)
    seg = Segmenter(model, scales=(1.0, 0.5), flip=True)
    one = evaluate(seg, data, trimap_widths=range(1, 4), progress=False)
    batched = evaluate(seg, data, trimap_widths=range(1, 4), progress=False, batch_size=3, workers=2)
    assert one["confusion_matrix"] == batched["confusion_matrix"] and one["trimap"] == batched["trimap"]


@pytest.mark.slow
def test_predict_ranks_with_different_checkpoints_fail_before_writing(tmp_path):
    """torchrun predict with another --weights on one rank: both fail, no outputs of two models."""
    from PIL import Image

    from tiny_model import tiny_image

    a, b = _checkpoint(tmp_path / "a.pt", 0), _checkpoint(tmp_path / "b.pt", 1)
    (tmp_path / "in").mkdir()
    for k in range(4):
        Image.fromarray(tiny_image(32, 40, seed=k)).save(tmp_path / "in" / f"{k}.png")
    args = [
        ["predict", "--weights", w, str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--backend", "torch"]
        for w in (a, b)
    ]
    outputs = _spawn_evaluate(tmp_path, args)
    for out in outputs:
        assert out.startswith("1\n") and "the processes disagree on the checkpoint" in out, out
    assert not list(tmp_path.glob("o/*.png"))
