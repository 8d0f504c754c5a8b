"""TensorFlow's DeepLab zoo (.tflite): our float model against the TFLite runtime and the truth."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplab import Segmenter, load_model
from deeplab.checkpoint import CheckpointError
from real import SAMPLES, bird, iou, model_file, pixel_accuracy, reference_labels, voc_sample


@pytest.fixture(scope="module")
def segmenters():
    torch.set_num_threads(2)
    return {name: Segmenter(load_model(model_file(name)), backend="torch") for name in ("depth 1.0", "depth 0.5")}


@pytest.mark.parametrize("name", ["depth 1.0", "depth 0.5"])
def test_labels_agree_with_the_tflite_runtime(segmenters, name):
    """Float weights against 8-bit execution: >= 98% of the labels equal on every photo."""
    images = [bird()[0]] + [voc_sample(n)[0] for n in SAMPLES]
    for rgb in images:
        ours, theirs = segmenters[name](rgb).labels, reference_labels(model_file(name), rgb)
        assert (ours == theirs).mean() >= 0.98


def test_accuracy_against_the_truth(segmenters):
    """Depth 1.0: bird IoU >= 0.90 against Coral's mask (its own test's bar), >= 99% pixel accuracy
    on the three VOC val samples; depth 0.5 at least as good as the runtime's own 8-bit labels."""
    rgb, mask = bird()
    assert iou(segmenters["depth 1.0"](rgb).labels, mask, 3) >= 0.90
    reference = iou(reference_labels(model_file("depth 0.5"), rgb), mask, 3)
    assert iou(segmenters["depth 0.5"](rgb).labels, mask, 3) >= reference - 0.01
    for n in SAMPLES:
        rgb, truth = voc_sample(n)
        assert pixel_accuracy(segmenters["depth 1.0"](rgb).labels, truth) >= 0.99


def test_what_the_file_says_goes_into_the_model():
    model = load_model(model_file("depth 0.5"))
    config = model.meta.config
    assert model.meta.arch == "deeplabv3-mobilenetv2-tf" and config["width_mult"] == 0.5
    assert config["output_stride"] == 16 and config["pooling_first"] and config["align_corners"]
    assert model.meta.mean == pytest.approx((128 / 255,) * 3) and model.meta.std == pytest.approx((128 / 255,) * 3)
    assert model.meta.classes[3] == "bird" and len(model.meta.classes) == 21


def test_the_shipped_weights_are_the_zoo_file():
    """voc-mobilenetv2 ships in the package (no ../shared needed) and is the depth-1.0 file."""
    shipped = load_model("voc-mobilenetv2")
    state = load_model(model_file("depth 1.0")).state_dict()
    assert all(torch.equal(v, state[k]) for k, v in shipped.state_dict().items())


def _patched(path, tmp_path, old: str, new: int):
    """The model file with the operator code ``old`` changed to builtin code ``new``."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator

    data = bytearray(path.read_bytes())
    model = tflite.Model.GetRootAsModel(data, 0)
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == getattr(BuiltinOperator, old):
            for field, size in ((4, 1), (10, 4)):  # deprecated_builtin_code (int8), builtin_code (int32)
                offset = code._tab.Offset(field)
                if offset:
                    data[code._tab.Pos + offset : code._tab.Pos + offset + size] = new.to_bytes(size, "little")
    out = tmp_path / f"{old.lower()}.tflite"
    out.write_bytes(bytes(data))
    return out


def test_bad_tflite_files_get_one_line(tmp_path):
    from click.testing import CliRunner

    from deeplab.apps.cli import main

    path = model_file("depth 0.5")
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(path.read_bytes()[:50_000])
    not_tflite = tmp_path / "photo.tflite"
    not_tflite.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    cases = {
        truncated: "damaged or truncated",
        not_tflite: "not a TensorFlow Lite model",
        _patched(path, tmp_path, "AVERAGE_POOL_2D", 17): "operator MAX_POOL_2D is not supported",
        _patched(path, tmp_path, "CONCATENATION", 0): "not DeepLab v3 on MobileNetV2",
    }
    for bad, message in cases.items():
        with pytest.raises(CheckpointError, match=message):
            load_model(bad)
        result = CliRunner().invoke(main, ["convert", str(bad), str(tmp_path / "out.pt")])
        assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1
        assert str(bad) in result.output and not (tmp_path / "out.pt").exists()


def test_predict_and_the_other_backends_give_the_same_labels(segmenters, tmp_path):
    """deeplab predict with no --weights (the shipped model) and onnxruntime give the torch path's labels."""
    from click.testing import CliRunner
    from PIL import Image

    from deeplab.apps.cli import main
    from deeplab.imageio import read_mask

    rgb, _ = voc_sample("23")
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    result = CliRunner().invoke(
        main, ["predict", str(tmp_path / "photo.png"), "-o", str(tmp_path / "out"), "--backend", "torch"]
    )
    assert result.exit_code == 0, result.output
    assert "no --weights: the shipped voc-mobilenetv2" in result.output
    expected = segmenters["depth 1.0"](rgb).labels
    assert np.array_equal(read_mask(tmp_path / "out" / "photo.png"), expected)
    pytest.importorskip("onnxruntime")
    onnx = Segmenter(load_model("voc-mobilenetv2"), backend="onnxruntime")(rgb).labels
    assert (onnx == expected).mean() >= 0.999
