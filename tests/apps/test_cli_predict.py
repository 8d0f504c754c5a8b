import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from deeplab.apps import cli
from deeplab.apps.cli import main
from tiny_model import TinyNet, tiny_image


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
    monkeypatch.setattr(cli, "load_model", lambda path, **kw: model)
    return model


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_predict_folder_writes_labels_overlays_and_probs(images, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = _run(
        "predict", "--weights", "w.pt", images, "-o", out, "--scales", "1,0.5", "--flip", "--tile", "32", "--save-probs"
    )
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
    result = _run("predict", "--weights", "w.pt", f"{images}/*.png", "-o", tmp_path / "o", "--preset", "deeplabv2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "a_overlay.png"]


def test_corrupt_image_fails_alone_and_is_listed(images, tmp_path, tiny_weights):
    (images / "c.png").write_bytes(b"garbage")
    result = _run("predict", "--weights", "w.pt", images, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "2 of 3 images segmented" in result.output
    assert "1 failed" in result.output and "c.png: not an image (no format PIL reads)" in result.output
    assert (tmp_path / "out" / "a.png").exists() and (tmp_path / "out" / "b.png").exists()


def test_empty_folder_and_unwritable_output_are_one_line_errors(images, tmp_path, tiny_weights):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("predict", "--weights", "w.pt", empty, "-o", tmp_path / "out")
    assert result.exit_code != 0 and f"{empty}: no images found" in result.output
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    result = _run("predict", "--weights", "w.pt", images, "-o", blocker / "out")
    assert result.exit_code == 2 and f"{blocker} is a file, not a folder" in result.output  # a usage error
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--scales", "1,0"], "expected positive numbers"),
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
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    from deeplab.models import build_model, save_model

    model = build_model("deeplabv3-mobilenetv2", num_classes=21).eval()
    save_model(tmp_path / "m.pt", model)
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
    result = _run("predict", "--weights", "w.pt", images / "a.png", "-o", tmp_path / "o", "--crf", "--save-probs")
    assert result.exit_code == 0, result.output
    probs = np.load(tmp_path / "o" / "a_probs.npy")
    assert probs.shape == (4, 40, 56) and np.allclose(probs.sum(0), 1, atol=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "--threads"),
        (["--alpha", "2"], "--alpha"),
        (["--overlap", "1"], "--overlap"),
        (["--scales", "nan"], "expected positive numbers"),
    ],
)
def test_option_values_are_usage_errors_before_any_work(images, tmp_path, tiny_weights, args, message):
    out = tmp_path / "out"
    result = _run("predict", "--weights", "w.pt", images, "-o", out, *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_cli_rejects_bad_devices_opsets_and_paths(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cases = [
        (["train", "--device", "foo"], "unknown device 'foo'"),
        (["export", "--weights", "w.pt", "--opset", "99", str(tmp_path / "m.onnx")], "--opset"),
        (["export", "--weights", "w.pt", str(blocker / "m.onnx")], "is a file, not a folder"),
        (["evaluate", "--weights", "w.pt", "--dataset", "shapes", "-o", str(blocker / "e")], "is a file"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append((["train", "--device", "cuda"], "no CUDA GPU on this machine"))
    for args, message in cases:
        result = _run(*args)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, tiny_weights):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(tiny_image(40, 56, seed=1)).save(folder / "a.png")
    for _ in range(2):
        result = _run("predict", "--weights", "w.pt", folder, "-o", folder / "seg")
        assert result.exit_code == 0 and "1 of 1 images segmented" in result.output, result.output
    assert sorted(p.name for p in (folder / "seg").iterdir()) == ["a.png", "a_overlay.png"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_fails_alone(images, tmp_path, tiny_weights, monkeypatch):
    from PIL import Image as PILImage

    bomb = images / "c_bomb.png"
    PILImage.new("L", (60, 60)).save(bomb)  # declares 3600 pixels: a bomb under the lowered limit
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1200)  # an error above 2400 px; the others have 2240
    out = tmp_path / "out"
    result = _run("predict", "--weights", "w.pt", images, "-o", out)
    assert result.exit_code == 1 and "2 of 3 images segmented" in result.output
    assert f"{bomb}: refusing to decode" in result.output and "Traceback" not in result.output


def test_interrupted_predictions_leave_no_partial_files(images, tmp_path, tiny_weights, monkeypatch):
    def interrupted(file, array):
        file.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "save", interrupted)
    out = tmp_path / "out"
    result = _run("predict", "--weights", "w.pt", images, "-o", out, "--save-probs")
    assert result.exit_code != 0  # click turns Ctrl-C into an abort
    names = sorted(p.name for p in out.iterdir())
    assert names and not [n for n in names if n.endswith(".npy") or n.startswith(".")]  # no partial, no temporary
    for name in names:
        Image.open(out / name).load()  # what is there is complete


def _predict_worker(rank: int, port: int, args: list, out: str) -> None:
    import os

    import torch
    from click.testing import CliRunner

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    result = CliRunner().invoke(main, args)
    with open(f"{out}/rank{rank}.txt", "w") as f:
        f.write(f"{result.exit_code}\n{result.output}")


@pytest.mark.slow
def test_two_process_predict_writes_each_file_once(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from deeplab.models import build_model, save_model

    folder = tmp_path / "in"
    for k in range(5):
        (folder / f"sub{k % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(tiny_image(40, 56, seed=k)).save(folder / f"sub{k % 2}" / f"img{k // 2}.png")  # stems repeat
    save_model(tmp_path / "m.pt", build_model("deeplabv3-mobilenetv2", num_classes=7, width_mult=0.25).eval())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["predict", "--weights", str(tmp_path / "m.pt"), str(folder), "-o", str(tmp_path / "out")]
    mp.spawn(_predict_worker, args=(port, args, str(tmp_path)), nprocs=2)
    logs = [(tmp_path / f"rank{r}.txt").read_text() for r in range(2)]
    assert "rank 0: 3 of 3 images" in logs[0] and "rank 1: 2 of 2 images" in logs[1], logs
    labels = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.endswith("_overlay.png"))
    assert labels == ["img0-1.png", "img0.png", "img1-1.png", "img1.png", "img2.png"]


def test_batches_and_decoding_workers_give_the_same_files(images, tmp_path, tiny_weights):
    Image.fromarray(tiny_image(40, 56, seed=7)).save(images / "c.png")  # a.png and c.png share a size
    (images / "d.png").write_bytes(b"not an image")
    plain = _run("predict", "--weights", "w.pt", images, "-o", tmp_path / "plain", "--save-probs")
    batched = _run(
        "predict",
        "--weights",
        "w.pt",
        images,
        "-o",
        tmp_path / "batched",
        "--save-probs",
        "--batch-size",
        "3",
        "--workers",
        "2",
    )
    for result in (plain, batched):
        assert result.exit_code == 1 and "3 of 4 images segmented" in result.output and "d.png" in result.output
    for name in ("a", "b", "c"):
        a, b = np.load(tmp_path / "plain" / f"{name}_probs.npy"), np.load(tmp_path / "batched" / f"{name}_probs.npy")
        assert np.abs(a - b).max() < 1e-5


def test_sigterm_during_predict_leaves_no_partial_file(tmp_path):
    """SIGTERM (as from a job scheduler) ends predict --crf as Ctrl-C does: exit 143, every file that
    is there is whole, no temporary left behind."""
    import signal
    import subprocess
    import sys
    import time

    import torch
    from PIL import Image

    from deeplab.models import build_model, save_model
    from tiny_model import tiny_image

    torch.manual_seed(0)
    save_model(tmp_path / "m.pt", build_model("deeplabv3-mobilenetv2", num_classes=4, width_mult=0.25))
    (tmp_path / "in").mkdir()
    for k in range(40):
        Image.fromarray(tiny_image(192, 256, seed=k)).save(tmp_path / "in" / f"{k:02d}.png")
    out = tmp_path / "out"
    args = ["predict", "--weights", tmp_path / "m.pt", tmp_path / "in", "-o", out, "--crf", "--backend", "torch"]
    process = subprocess.Popen([sys.executable, "-m", "deeplab", *map(str, args)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("*_overlay.png")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr.decode()[-2000:]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    written = sorted(out.glob("*.png"))
    assert 0 < len(written) < 80
    for path in written:
        Image.open(path).load()  # whole files only
