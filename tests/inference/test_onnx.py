import io

import numpy as np
import pytest
import torch

from deeplab.inference import Segmenter
from deeplab.inference.onnx import OnnxModel, export_onnx
from tiny_model import TinyNet, tiny_image

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(TinyNet(), path)
    return path


def test_onnx_matches_torch_at_several_sizes(onnx_file):
    model, runner = TinyNet(), OnnxModel.from_file(onnx_file, threads=1)
    for shape in [(1, 3, 65, 65), (2, 3, 40, 72)]:  # dynamic batch, height and width
        x = torch.randn(*shape)
        with torch.no_grad():
            np.testing.assert_allclose(runner(x).numpy(), model(x).numpy(), atol=1e-4)


def test_onnx_carries_the_model_meta(onnx_file):
    runner = OnnxModel.from_file(onnx_file)
    assert runner.output_stride == 4
    assert runner.meta.classes == ["c0", "c1", "c2", "c3"] and runner.meta.palette[1] == [60, 195, 30]


def test_onnxruntime_backend_segmenter_matches_torch():
    model, image = TinyNet(), tiny_image(48, 64)
    torch_pred = Segmenter(model, scales=(1.0, 0.5), flip=True)(image)
    ort_pred = Segmenter(model, scales=(1.0, 0.5), flip=True, backend="onnxruntime")(image)
    np.testing.assert_allclose(ort_pred.probs, torch_pred.probs, atol=1e-4)
    with pytest.raises(ValueError, match="fp32 only"):
        Segmenter(model, backend="onnxruntime", precision="bf16")


def test_export_to_unwritable_path_names_it(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write"):
        export_onnx(TinyNet(), blocker / "x.onnx")
    export_onnx(TinyNet(), io.BytesIO())  # in memory works too


def test_real_model_onnx_matches_torch(tmp_path):
    import deeplab

    torch.manual_seed(0)
    model = deeplab.build_model("deeplabv3-mobilenetv2", num_classes=3).eval()
    export_onnx(model, tmp_path / "m.onnx")
    runner = OnnxModel.from_file(tmp_path / "m.onnx", threads=1)
    assert runner.output_stride == 16 and runner.meta.arch == "deeplabv3-mobilenetv2"
    for shape in [(1, 3, 64, 64), (1, 3, 49, 83)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            np.testing.assert_allclose(runner(x).numpy(), model(x).numpy(), atol=1e-4, rtol=1e-4)
