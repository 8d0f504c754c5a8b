"""The commands under faults: weights that hold NaN, a disk that fills up (a file-size limit, in a
child process). Each ends with a non-zero status and one line naming the file, leaves no partial or
temporary file, and never writes a silently wrong result."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from deeplab.models import build_model, save_model
from tiny_model import tiny_image

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "shapes.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    model = build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25)
    save_model(folder / "good.pt", model)
    with torch.no_grad():
        model.classifier[-1].weight[0, 0] = float("nan")
    torch.save(
        {**torch.load(folder / "good.pt", weights_only=True), "state_dict": model.state_dict()}, folder / "nan.pt"
    )
    (folder / "in").mkdir()
    Image.fromarray(tiny_image(320, 400, seed=1)).save(folder / "in" / "photo.png")
    return folder


def _commands(folder: Path, weights: str, out: Path) -> dict[str, list[str]]:
    train = ["train.iterations=1", "data.val_split=null", "data.num_workers=0", "model.arch=deeplabv3-mobilenetv2"]
    train += ["model.options={width_mult: 0.25}"]
    return {
        "predict": ["predict", "--weights", weights, str(folder / "in"), "-o", str(out), "--backend", "torch"],
        "evaluate": ["evaluate", "--weights", weights, "--dataset", "shapes", "--max-images", "2", "-o", str(out)],
        "convert": ["convert", weights, str(out / "converted.pt")],
        "export": ["export", "--weights", weights, str(out / "model.onnx")],
        "train": [
            "train",
            "--config",
            str(CONFIG),
            *train,
            f"train.init_weights={weights}",
            "--output",
            str(out),
            "--quiet",
        ],
    }


def _run(args: list[str], file_size: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, resource.RLIM_INFINITY))

    env = {**os.environ, "DEEPLAB_CACHE_DIR": ""}
    return subprocess.run(
        [sys.executable, "-m", "deeplab", *args], capture_output=True, text=True, preexec_fn=limit, env=env
    )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error") or "Traceback" in line]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "evaluate", "convert", "export", "train"])
def test_weights_holding_nan_are_refused_by_every_command(files, tmp_path, command):
    done = _run(_commands(files, str(files / "nan.pt"), tmp_path / "out")[command])
    assert done.returncode == 1, done.stdout + done.stderr
    assert _errors(done.stderr) == [
        f"Error: {files / 'nan.pt'}: weights hold NaN or infinity, first in classifier.4.weight (1 tensors)"
    ]
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] if (tmp_path / "out").exists() else []
    assert [p.name for p in written if p.suffix != ".csv"] == []  # no labels, no checkpoint, no model


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "evaluate", "convert", "export", "train"])
def test_a_full_disk_ends_every_command_in_one_line(files, tmp_path, command):
    done = _run(_commands(files, str(files / "good.pt"), tmp_path / "out")[command], file_size=5_000)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "cannot write" in line]
    assert errors and all(str(tmp_path / "out") in e for e in errors), done.stderr[-3000:]
    for path in (tmp_path / "out").rglob("*"):
        assert not path.name.startswith(".") and path.suffix != ".tmp", path  # no temporaries
        if path.suffix == ".png":
            Image.open(path).load()  # every picture there is whole
