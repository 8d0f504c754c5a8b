"""The OpenVINO backend: the conversion cached on disk, the fallback of "auto"."""

from __future__ import annotations

import numpy as np
import pytest

from deeplab.inference import Segmenter
from tiny_model import TinyNet, tiny_image

pytest.importorskip("openvino")


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPLAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_second_model_reads_the_cache_instead_of_exporting(root, monkeypatch):
    from deeplab.inference import openvino

    model, image = TinyNet().eval(), tiny_image(48, 64, seed=3)
    first = Segmenter(model, backend="openvino")
    assert [p.name for p in (root / "openvino").iterdir()] != []

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(openvino, "onnx_bytes", no_export)
    second = Segmenter(model, backend="openvino")
    a, b = first(image), second(image)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.probs, b.probs)
    assert np.array_equal(a.labels, Segmenter(model, backend="torch")(image).labels)


def test_auto_falls_back_to_torch_where_openvino_cannot_convert(root, monkeypatch):
    from deeplab.inference import openvino

    def unsupported(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(openvino, "onnx_bytes", unsupported)
    with pytest.warns(UserWarning, match="OpenVINO cannot run this model.*unsupported operator"):
        seg = Segmenter(TinyNet().eval())
    assert seg.backend == "torch"
    with pytest.raises(RuntimeError, match="unsupported operator"):  # asked for by name: no fallback
        Segmenter(TinyNet().eval(), backend="openvino")


def test_auto_is_the_default_and_picks_openvino_on_the_cpu(root):
    assert Segmenter(TinyNet().eval()).backend == "openvino"
    assert Segmenter(TinyNet().eval(), optimize=False).backend == "torch"
    assert Segmenter(TinyNet().eval(), compile=True).backend == "torch"
