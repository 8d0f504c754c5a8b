"""8-bit inference (NNCF + OpenVINO), in child processes (OpenVINO: see tests/child.py): held to the
accuracy bound on small models, never a silent fp32, bad calibration named."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from child import run_child

pytest.importorskip("openvino")
pytest.importorskip("nncf")

SHAPES = """
import json, numpy as np
from click.testing import CliRunner
from deeplab import Segmenter, load_model
from deeplab.apps.cli import main
from deeplab.data.shapes import ShapesDataset
from deeplab.evaluation import evaluate
from PIL import Image
calibration = ShapesDataset("train", 8)
for k in range(len(calibration)):
    Image.fromarray(calibration[k][0]).save(f"{TMP}/cal{k}.png")
run = CliRunner().invoke(main, ["quantize", "--weights", "shapes-mobilenetv2", "--calibration", TMP, "-o", f"{TMP}/int8.pt"])
assert run.exit_code == 0, run.output
model = load_model(f"{TMP}/int8.pt")
data = ShapesDataset("val", 20)
fp32, int8 = Segmenter(model), Segmenter(model, precision="int8")
equal = np.mean([(fp32(data[k][0]).labels == int8(data[k][0]).labels).mean() for k in range(len(data))])
scores = [evaluate(s, data, progress=False, trimap_widths=None)["miou"] for s in (fp32, int8)]
print(json.dumps({"equal": float(equal), "miou": scores, "backend": int8.backend}))
"""


@pytest.mark.slow
def test_int8_of_the_shipped_shapes_model_keeps_its_accuracy(tmp_path):
    result = run_child(f"TMP = {str(tmp_path)!r}\n" + SHAPES, timeout=600, DEEPLAB_CACHE_DIR=str(tmp_path / "cache"))
    fp32, int8 = result["miou"]
    assert result["backend"] == "openvino" and result["equal"] >= 0.99
    assert abs(fp32 - int8) <= 0.005  # mIoU within 0.5 points


REAL = """
import json, numpy as np
from deeplab import Segmenter, load_model
from deeplab.inference.int8 import quantize
from real import SAMPLES, bird, voc_sample
model = load_model("voc-mobilenetv2")
photos = [bird()] + [voc_sample(n) for n in SAMPLES]
model.meta.int8 = quantize(model, [rgb for rgb, _ in photos])
fp32, int8 = Segmenter(model), Segmenter(model, precision="int8")
rows = []
for rgb, truth in photos:
    a, b = fp32(rgb).labels, int8(rgb).labels
    valid = truth != 255
    rows.append([float((a == b).mean()), float((a[valid] == truth[valid]).mean()), float((b[valid] == truth[valid]).mean())])
print(json.dumps(rows))
"""


@pytest.mark.slow
def test_int8_of_the_real_weights_on_real_photos(tmp_path):
    """Labels >= 99% equal to fp32 and pixel accuracy within 0.3 points, on the bird and the VOC photos."""
    from real import real_dir

    real_dir()
    for equal, fp32, int8 in run_child(REAL, timeout=600, DEEPLAB_CACHE_DIR=str(tmp_path)):
        assert equal >= 0.99 and abs(fp32 - int8) <= 0.003


def test_int8_is_never_a_silent_fp32(tmp_path):
    from deeplab.apps.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(b"not an image")
    runner = CliRunner()
    result = runner.invoke(
        main, ["predict", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--precision", "int8", "--backend", "torch"]
    )
    assert result.exit_code == 1 and "precision int8 runs on the openvino backend, not torch" in result.output
    result = runner.invoke(
        main,
        [
            "quantize",
            "--weights",
            "voc-mobilenetv2",
            "--calibration",
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "q.pt"),
        ],
    )
    assert result.exit_code == 1 and "skipping" in result.output and "a.png" in result.output
    assert (
        "0 readable image(s) of 1; int8 calibration needs 2 or more" in result.output
        and not (tmp_path / "q.pt").exists()
    )


NO_GRAPH = """
import json
from deeplab import Segmenter, load_model
try:
    Segmenter(load_model("voc-mobilenetv2"), precision="int8")
    print(json.dumps("ran"))
except ValueError as err:
    print(json.dumps(str(err)))
"""


def test_int8_without_a_calibrated_graph_says_how_to_make_one(tmp_path):
    message = run_child(NO_GRAPH, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert message.startswith("the model has no int8 graph: make one with deeplab quantize")
