"""Devices: names checked up front, precisions per device, the Segmenter and validation on a device."""

import numpy as np
import pytest
import torch

from deeplab.devices import check_precision, resolve_device
from deeplab.inference import Segmenter
from tiny_model import TinyNet, tiny_image


def test_default_device_and_bad_names():
    assert resolve_device(None) == torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'foo'"):
        resolve_device("foo")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda': no CUDA GPU on this machine"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="no CUDA GPU"):
            Segmenter(TinyNet(), device="cuda:1")


def test_precisions_per_device():
    check_precision("bf16", torch.device("cpu"))
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        check_precision("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        Segmenter(TinyNet(), precision="fp16", device="cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int4", torch.device("cpu"))
    check_precision("int8", torch.device("cpu"))  # a quantised graph on OpenVINO (tests/inference/test_int8.py)
    with pytest.raises(ValueError, match="int8 runs on the CPU"):
        check_precision("int8", torch.device("cuda"))


def test_cli_rejects_absent_and_unknown_devices_before_any_work(tmp_path):
    from click.testing import CliRunner

    from deeplab.apps.cli import main

    bad = ["foo"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad:
        for args in (
            ["predict", "--weights", "w.pt", str(tmp_path), "-o", str(tmp_path / "o"), "--device", device],
            ["evaluate", "--weights", "w.pt", "--dataset", "shapes", "-o", str(tmp_path / "e"), "--device", device],
            ["demo", "-o", str(tmp_path / "d"), "--device", device],
        ):
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 2 and "--device" in result.output, (args, result.output)
    assert list(tmp_path.iterdir()) == []


def test_validation_runs_on_the_model_itself(monkeypatch):
    """Trainer.validate neither copies nor folds the model (it would not on a GPU either)."""
    from deeplab.data import ShapesDataset
    from deeplab.inference import backends
    from deeplab.models import build_model
    from deeplab.train import Trainer, load_config

    def no_folding(*args, **kwargs):
        raise AssertionError("validation must not build a folded copy of the model")

    monkeypatch.setattr(backends, "prepare_model", no_folding)
    cfg = load_config(None, ["model.arch=deeplabv3-mobilenetv2", "data.dataset=shapes", "data.val_split=null"])
    model = build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25)
    trainer = Trainer(cfg, model, ShapesDataset("train", 2, size=64), ShapesDataset("val", 2, size=64), progress=False)
    trainer.train_mode()
    result = trainer.validate()
    assert 0.0 <= result["miou"] <= 1.0 and len(result["panels"]) == 2
    assert model.training  # back in train mode afterwards


# -- on a GPU (scripts/gpu-check.sh) ---------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_segmenter_on_cuda_equals_cpu(precision):
    model = TinyNet()
    image = tiny_image(96, 128)
    cpu = Segmenter(model, scales=(1.0, 0.5), flip=True, device="cpu")(image)
    gpu = Segmenter(model, scales=(1.0, 0.5), flip=True, device="cuda", precision=precision)(image)
    tolerance = 1e-4 if precision == "fp32" else 2e-2
    assert np.abs(cpu.probs - gpu.probs).max() < tolerance
    assert (cpu.labels == gpu.labels).mean() > (0.9999 if precision == "fp32" else 0.98)


@pytest.mark.gpu
def test_tiled_segmenter_on_cuda_equals_untiled():
    model = TinyNet()
    image = tiny_image(100, 140)
    whole = Segmenter(model, device="cuda")(image)
    tiled = Segmenter(model, device="cuda", tile=64)(image)
    assert (whole.labels == tiled.labels).mean() > 0.99


KEEP_FREED_CHILD = """
import resource, sys, torch
from deeplab.devices import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else True
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 << 20, dtype=torch.uint8)  # 64 MiB, written, then freed
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, max(faults[-4:]))  # the heap settles in a few rounds (small objects land in a freed block)
"""


def test_keep_freed_memory_reuses_big_blocks_without_page_faults():
    """A freed 64 MiB tensor's memory is reused: no fresh pages once the heap has settled (16k
    faults each time without)."""
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc's malloc only")

    def faults(mode):
        done = subprocess.run(
            [sys.executable, "-c", KEEP_FREED_CHILD, mode], capture_output=True, text=True, check=True
        )
        kept, count = done.stdout.split()
        assert kept == "True"
        return int(count)

    assert faults("default") > 10000 and faults("keep") < 100
