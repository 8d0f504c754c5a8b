"""The OpenVINO backend, in child processes (see tests/child.py): the torch path's labels, the
conversion cached on disk, the fallback of "auto", forks."""

from __future__ import annotations

import pytest

from child import run_child

pytest.importorskip("openvino")

LABELS = """
import json, numpy as np
from deeplab.inference import Segmenter
from tiny_model import TinyNet, tiny_image
model, image = TinyNet().eval(), tiny_image(48, 64, seed=3)
torch_path = Segmenter(model, backend="torch")(image)
auto = Segmenter(model)
got = auto(image)
fast = auto.predict_batch([image, image[:40]], probs=False)
print(json.dumps({"backend": auto.backend, "labels_equal": bool(np.array_equal(got.labels, torch_path.labels)),
                  "labels_only_equal": bool(np.array_equal(fast[0].labels, got.labels))
                  and bool(np.array_equal(fast[1].labels, auto(image[:40]).labels)) and fast[0].probs is None,
                  "labels_in_graph": auto.model._labelled is not None, "dtype": str(fast[0].labels.dtype),
                  "max_diff": float(np.abs(got.probs - torch_path.probs).max()),
                  "no_optimize": Segmenter(model, optimize=False).backend,
                  "compiled": Segmenter(model, compile=True).backend}))
"""


def test_auto_is_the_default_and_gives_the_torch_paths_labels(tmp_path):
    result = run_child(LABELS, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert result["backend"] == "openvino" and result["labels_equal"] and result["max_diff"] < 1e-5
    assert result["labels_only_equal"] and result["labels_in_graph"] and result["dtype"] == "int64"
    assert result["no_optimize"] == "torch" and result["compiled"] == "torch"


CACHED = """
import json, numpy as np
from deeplab.inference import Segmenter, openvino
from tiny_model import TinyNet, tiny_image
model, image = TinyNet().eval(), tiny_image(48, 64, seed=3)
first = Segmenter(model, backend="openvino")(image)
def no_export(*args, **kwargs):
    raise AssertionError("exported again")
openvino.onnx_bytes = no_export
second = Segmenter(model, backend="openvino")(image)
print(json.dumps({"same": bool(np.array_equal(first.labels, second.labels) and np.array_equal(first.probs, second.probs))}))
"""


def test_second_model_reads_the_cache_instead_of_exporting(tmp_path):
    assert run_child(CACHED, DEEPLAB_CACHE_DIR=str(tmp_path))["same"]
    assert len(list((tmp_path / "openvino").iterdir())) == 1
    assert run_child(CACHED, DEEPLAB_CACHE_DIR=str(tmp_path))["same"]  # a new process: from the disk


FALLBACK = """
import json, warnings
from deeplab.inference import Segmenter, openvino
from tiny_model import TinyNet
def unsupported(*args, **kwargs):
    raise RuntimeError("unsupported operator")
openvino.onnx_bytes = unsupported
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    backend = Segmenter(TinyNet().eval()).backend
try:
    Segmenter(TinyNet().eval(), backend="openvino")
    explicit = "ran"
except RuntimeError as err:
    explicit = str(err)
print(json.dumps({"backend": backend, "warnings": [str(w.message) for w in caught], "explicit": explicit}))
"""


def test_auto_falls_back_to_torch_where_openvino_cannot_convert(tmp_path):
    result = run_child(FALLBACK, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert result["backend"] == "torch"
    assert any("OpenVINO cannot run this model (unsupported operator)" in w for w in result["warnings"])
    assert result["explicit"] == "unsupported operator"  # asked for by name: no fallback


FORK = """
import gc, json, torch
from deeplab.inference import Segmenter
from tiny_model import TinyNet, tiny_image
gc.disable()
seg = Segmenter(TinyNet().eval(), backend="openvino")
seg(tiny_image(48, 64, seed=3))
seg.cycle = seg  # garbage that only a collection frees: in the workers, after the fork
del seg
class Collecting(torch.utils.data.Dataset):
    def __len__(self):
        return 4
    def __getitem__(self, i):
        gc.collect()
        return torch.zeros(2)
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    n = sum(len(b) for b in torch.utils.data.DataLoader(Collecting(), batch_size=2, num_workers=2))
print(json.dumps([n, [str(w.message) for w in caught if "OpenVINO" in str(w.message)]]))
"""


def test_openvino_model_collected_in_a_forked_worker_does_not_hang(tmp_path):
    """Destroying an inherited compiled model in a forked child used to hang forever (its threads
    live in the parent only); the child now keeps it. Forking at all is unsafe: warned, once."""
    n, warned = run_child(FORK, timeout=60, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert n == 4 and len(warned) == 1 and "forking a process where OpenVINO has run is unsafe" in warned[0]


PREDICT = """
import json
from click.testing import CliRunner
from deeplab.apps.cli import main
outs = []
for k in range(2):
    r = CliRunner().invoke(main, ["predict", "--weights", WEIGHTS, IMAGES, "-o", f"{OUT}{k}", "--workers", "2"])
    outs.append([r.exit_code, r.output])
print(json.dumps(outs))
"""


def test_predict_announces_the_one_off_conversion_once_and_runs_with_loader_workers(tmp_path):
    import torch
    from PIL import Image

    from deeplab.models import build_model, save_model
    from tiny_model import tiny_image

    torch.manual_seed(0)
    save_model(tmp_path / "m.pt", build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25).eval())
    (tmp_path / "in").mkdir()
    for k in range(3):
        Image.fromarray(tiny_image(40, 56, seed=k)).save(tmp_path / "in" / f"{k}.png")
    code = f"WEIGHTS, IMAGES, OUT = {str(tmp_path / 'm.pt')!r}, {str(tmp_path / 'in')!r}, {str(tmp_path / 'o')!r}\n"
    (first, output1), (second, output2) = run_child(code + PREDICT, DEEPLAB_CACHE_DIR=str(tmp_path / "cache"))
    assert first == 0 and second == 0, output1 + output2
    assert f"deeplab: converting the model for OpenVINO (once: cached in {tmp_path / 'cache'})" in output1
    assert "converting" not in output2 and "3 of 3 images segmented" in output2
    for k in range(3):
        assert (tmp_path / "o0" / f"{k}.png").read_bytes() == (tmp_path / "o1" / f"{k}.png").read_bytes()


REAL_WEIGHTS = """
import json, numpy as np
from deeplab import Segmenter, load_model
from real import voc_sample
rgb, truth = voc_sample("114")
model = load_model("voc-mobilenetv2")
torch_path = Segmenter(model, backend="torch")(rgb).labels
openvino = Segmenter(model)
labels = openvino(rgb).labels
print(json.dumps({"backend": openvino.backend, "equal": float((labels == torch_path).mean())}))
"""


def test_the_shipped_real_weights_run_on_openvino(tmp_path):
    from real import real_dir

    real_dir()  # skips where ../shared/real is absent
    result = run_child(REAL_WEIGHTS, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert result["backend"] == "openvino" and result["equal"] >= 0.999


DAMAGED = """
import json, warnings, numpy as np
from deeplab.inference import Segmenter
from tiny_model import TinyNet, tiny_image
model, image = TinyNet().eval(), tiny_image(48, 64, seed=3)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    labels = Segmenter(model, backend="openvino")(image).labels
expected = Segmenter(model, backend="torch")(image).labels
print(json.dumps({"equal": bool(np.array_equal(labels, expected)), "warnings": [str(w.message) for w in caught]}))
"""


@pytest.mark.parametrize("damaged", ["model.bin", "model.xml", "compiled"])
def test_a_damaged_cache_entry_is_converted_again(tmp_path, damaged):
    """Garbled bytes in the cached IR or OpenVINO's compiled blob: a warning, a fresh conversion, the
    torch path's labels (they were 83.6% equal before entries were verified)."""
    first = run_child(DAMAGED, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert first["equal"] and not any("damaged" in w for w in first["warnings"])
    (entry,) = (tmp_path / "openvino").iterdir()
    files = sorted((entry / "compiled").rglob("*.blob")) if damaged == "compiled" else [entry / damaged]
    assert files, f"no {damaged} file in {entry}"
    data = bytearray(files[0].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # the same size, garbled
    files[0].write_bytes(bytes(data))
    second = run_child(DAMAGED, DEEPLAB_CACHE_DIR=str(tmp_path))
    assert second["equal"] and any("is damaged" in w and "converting again" in w for w in second["warnings"])
