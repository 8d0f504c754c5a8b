import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_model import TinyNet, tiny_image

import deeplab
from deeplab.cli import main


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(tiny_image(40, 56, seed=1)).save(folder / "a.png")
    Image.fromarray(tiny_image(33, 47, seed=2)).convert("L").save(folder / "b.jpg")
    return folder


@pytest.fixture
def tiny_weights(monkeypatch, tmp_path):
    """Stand in for deeplab.load_model: any --weights path loads a TinyNet."""
    model = TinyNet()
    monkeypatch.setattr(deeplab, "load_model", lambda path, **kw: model, raising=False)
    return model


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_folder_writes_labels_overlays_and_probs(images, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = _run("predict", "--weights", "w.pt", images, "-o", out, "--scales", "1,0.5",
                  "--flip", "--tile", "32", "--save-probs")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 of 2 images segmented" in result.output
    labels = Image.open(out / "a.png")
    assert labels.mode == "P" and labels.size == (56, 40)
    assert labels.getpalette()[3:6] == [60, 195, 30]  # the checkpoint's palette
    assert Image.open(out / "b_overlay.png").size[1] == 33
    probs = np.load(out / "b_probs.npy")
    assert probs.shape == (4, 33, 47) and np.allclose(probs.sum(0), 1, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "b.png")), probs.argmax(0))


def test_predict_glob_and_preset(images, tmp_path, tiny_weights):
    result = _run("predict", "--weights", "w.pt", f"{images}/*.png", "-o", tmp_path / "o",
                  "--preset", "deeplabv2")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "a_overlay.png"]


def test_corrupt_image_fails_alone_and_is_listed(images, tmp_path, tiny_weights):
    (images / "c.png").write_bytes(b"garbage")
    result = _run("predict", "--weights", "w.pt", images, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "2 of 3 images segmented" in result.output
    assert "1 failed" in result.output and "c.png: not a readable image" in result.output
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "b.png").exists()


def test_empty_folder_and_unwritable_output_are_one_line_errors(images, tmp_path, tiny_weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("predict", "--weights", "w.pt", empty, "-o", tmp_path / "out")
    assert result.exit_code != 0 and f"{empty}: no images found" in result.output
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = _run("predict", "--weights", "w.pt", images, "-o", blocker / "out")
    assert result.exit_code != 0 and "cannot create the output folder" in result.output
    assert str(blocker) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scales", "1,0"], "scales must be positive"),
        (["--scales", "a,b"], "comma-separated numbers"),
        (["--tile", "2"], "smaller than the model's output stride"),
    ],
)
def test_bad_options_are_clear_errors(images, tmp_path, tiny_weights, args, message):
    result = _run("predict", "--weights", "w.pt", images, "-o", tmp_path / "out", *args)
    assert result.exit_code != 0 and message in result.output


def test_palette_that_does_not_match_the_classes_is_an_error(images, tmp_path, tiny_weights):
    tiny_weights.meta.palette = tiny_weights.meta.palette[:3]
    result = _run("predict", "--weights", "w.pt", images, "-o", tmp_path / "out")
    assert result.exit_code != 0
    assert "w.pt: the model has 4 classes but its palette 3 colours" in result.output


def test_predict_and_export_with_a_real_checkpoint(images, tmp_path):
    import onnxruntime

    from deeplab.weights import save_checkpoint

    model = deeplab.build_model("deeplabv3-mobilenetv2", num_classes=21).eval()
    save_checkpoint(tmp_path / "m.pt", model)
    result = _run("predict", "--weights", tmp_path / "m.pt", images / "a.png", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    labels = Image.open(tmp_path / "o" / "a.png")
    assert labels.getpalette()[3:6] == [128, 0, 0]  # VOC palette
    result = _run("export", "--weights", tmp_path / "m.pt", tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    out = session.run(None, {"image": np.zeros((1, 3, 40, 56), np.float32)})[0]
    assert out.shape == (1, 21, 40, 56)


def test_missing_checkpoint_is_a_one_line_error(images, tmp_path):
    result = _run("predict", "--weights", tmp_path / "nope.pt", images, "-o", tmp_path / "o")
    assert result.exit_code != 0 and "nope.pt" in result.output and "Traceback" not in result.output


@pytest.mark.slow
def test_predict_with_crf(images, tmp_path, tiny_weights):
    pytest.importorskip("deeplab.crf")
    result = _run("predict", "--weights", "w.pt", images / "a.png", "-o", tmp_path / "o", "--crf",
                  "--save-probs")  # fmt: skip
    assert result.exit_code == 0, result.output
    probs = np.load(tmp_path / "o" / "a_probs.npy")
    assert probs.shape == (4, 40, 56) and np.allclose(probs.sum(0), 1, atol=1e-4)
