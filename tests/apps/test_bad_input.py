"""Bad input to the commands: one line naming the file and the problem, exit status non-zero,
nothing written, never a traceback or a silently wrong result."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from deeplab.apps.cli import main
from deeplab.models import build_model, save_model
from tiny_model import tiny_image


def _run(*args) -> tuple[int, str]:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_files_that_are_not_checkpoints_say_what_is_read(tmp_path):
    Image.fromarray(tiny_image(8, 8)).save(tmp_path / "photo.jpg")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07onnx")
    for path in (tmp_path / "photo.jpg", tmp_path / "model.onnx"):
        code, output = _run("info", path)
        assert code == 1 and str(path) in output and "not a checkpoint" in output
        assert "deeplab reads .pt/.pth" in output and len(output.strip().splitlines()) == 1


def test_convert_refuses_an_output_it_would_misname(tmp_path):
    save_model(tmp_path / "m.pt", build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25))
    code, output = _run("convert", tmp_path / "m.pt", tmp_path / "model.onnx")
    assert code == 2 and "write .pt, .pth or .safetensors" in output and not (tmp_path / "model.onnx").exists()


def test_metadata_with_a_wrong_class_count_is_named(tmp_path):
    import safetensors.torch

    save_model(tmp_path / "m.safetensors", build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25))
    state = safetensors.torch.load_file(tmp_path / "m.safetensors")
    with safetensors.safe_open(tmp_path / "m.safetensors", "pt") as f:
        meta = json.loads(f.metadata()["deeplab"])
    meta["config"]["num_classes"] = "seven"
    safetensors.torch.save_file(state, tmp_path / "seven.safetensors", metadata={"deeplab": json.dumps(meta)})
    for command in (["info"], ["convert"]):
        extra = [tmp_path / "out.pt"] if command == ["convert"] else []
        code, output = _run(*command, tmp_path / "seven.safetensors", *extra)
        assert (
            code == 1 and f"{tmp_path / 'seven.safetensors'}: deeplab checkpoint whose num_classes is 'seven'" in output
        )


def test_crf_given_an_image_for_its_probabilities(tmp_path):
    Image.fromarray(tiny_image(8, 8)).save(tmp_path / "photo.png")
    code, output = _run("crf", tmp_path / "photo.png", tmp_path / "photo.png", "-o", tmp_path / "out.png")
    assert code == 1 and "photo.png: not a .npy array file" in output and "allow_pickle" not in output
    assert not (tmp_path / "out.png").exists()
    np.save(tmp_path / "p.npy", np.zeros((8, 8)))
    code, output = _run("crf", tmp_path / "photo.png", tmp_path / "p.npy", "-o", tmp_path / "out.png")
    assert code == 1 and "expected C x H x W" in output


def test_usage_mistakes_say_what_to_do(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    code, output = _run("predict", tmp_path / "empty", "-o", tmp_path / "out")
    assert code == 1 and "no images found (it reads .jpg, .jpeg, .png" in output
    monkeypatch.chdir(tmp_path)  # no data/VOCdevkit here
    code, output = _run("train")
    assert code == 2 and "try --config configs/shapes.yaml" in output
    code, output = _run("evaluate", "--weights", "voc-mobilenetv2", "--dataset", "voc")
    assert code == 1 and "needs a root folder (--root DIR" in output
