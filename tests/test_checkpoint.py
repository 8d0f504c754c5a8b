import pytest
import torch
from click.testing import CliRunner

from deeplab import MultiScale, build_model, load_model
from deeplab.apps.cli import main
from deeplab.checkpoint import CheckpointError, read_checkpoint
from deeplab.models import load_backbone_weights, save_model


@pytest.fixture
def small_model():
    torch.manual_seed(0)
    model = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.5).eval()
    model.meta.classes = ["sky", "road", "car"]
    model.meta.palette = [(1, 2, 3), (4, 5, 6), (7, 8, 9)]
    model.meta.mean, model.meta.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    return model


def test_round_trip_gives_identical_logits_and_meta(tmp_path, small_model):
    path = tmp_path / "ckpt" / "model.pth"
    save_model(path, MultiScale(small_model), train_state={"iteration": 7})
    assert [p.name for p in path.parent.iterdir()] == ["model.pth"]  # no temp file left behind
    raw = read_checkpoint(path)
    assert raw["format"] == "deeplab" and raw["version"] == 1 and raw["train_state"] == {"iteration": 7}
    loaded = load_model(path)
    assert not loaded.training and loaded.meta == small_model.meta
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.equal(loaded(x), small_model(x))


def test_other_num_classes_reinitialises_classifier_only(tmp_path, small_model):
    save_model(tmp_path / "m.pth", small_model)
    with pytest.warns(UserWarning, match=r"num_classes is 5, re-initialised classifier layers classifier\.cls$"):
        model = load_model(tmp_path / "m.pth", num_classes=5)
    assert model.meta.classes == [f"class_{i}" for i in range(5)] and model.meta.mean == (0.5, 0.5, 0.5)
    assert torch.equal(model.classifier.fuse[0].weight, small_model.classifier.fuse[0].weight)
    assert torch.equal(model.backbone.features[3].conv[0][0].weight, small_model.backbone.features[3].conv[0][0].weight)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 47)).shape == (1, 5, 33, 47)


def test_output_stride_override_scales_stored_rates(tmp_path, small_model):
    save_model(tmp_path / "m.pth", small_model)
    model = load_model(tmp_path / "m.pth", output_stride=8)
    assert model.output_stride == 8 and model.meta.config["atrous_rates"] == (12, 24, 36)


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, small_model):
    (tmp_path / "text.pth").write_text("hello\n")
    save_model(tmp_path / "good.pth", small_model)
    data = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    torch.save({"weights": torch.zeros(2), "epoch": 3}, tmp_path / "unknown.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    cases = {
        "text.pth": "not a PyTorch",
        "truncated.pth": "truncated",
        "missing.pth": "no such",
        "unknown.pth": "unknown checkpoint format, first keys: weights, epoch",
        "tensor.pth": "holds a Tensor",
    }
    for name, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as info:
            load_model(tmp_path / name)
        assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_never_runs_code_from_the_file(tmp_path, capsys):
    torch.save({"format": "deeplab", "state_dict": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model(tmp_path / "evil.pth")
    assert "code ran" not in capsys.readouterr().out


def test_backbone_weights_of_the_wrong_network_are_refused(tmp_path, small_model):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not weights for a MobileNetV2 backbone: missing: features.0.0.weight"):
        load_backbone_weights(small_model, tmp_path / "resnet.pth")


def test_info_command(tmp_path, small_model):
    save_model(tmp_path / "m.pth", small_model, train_state={"iteration": 1})
    result = CliRunner().invoke(main, ["info", str(tmp_path / "m.pth")])
    assert result.exit_code == 0, result.output
    assert "deeplabv3plus-mobilenetv2" in result.output and "sky, road, car" in result.output
    assert "train_state" in result.output
    (tmp_path / "bad.pth").write_text("x")
    result = CliRunner().invoke(main, ["info", str(tmp_path / "bad.pth")])
    assert result.exit_code == 1 and "bad.pth" in result.output and "Traceback" not in result.output


def test_a_full_disk_leaves_the_previous_checkpoint_and_no_temporary(tmp_path, small_model, monkeypatch):
    import errno

    from deeplab.atomic import WriteError

    save_model(tmp_path / "last.pt", small_model)
    before = (tmp_path / "last.pt").read_bytes()

    def full_disk(obj, f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(WriteError, match=r"last\.pt: cannot write \(No space left on device\)"):
        save_model(tmp_path / "last.pt", small_model)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_checkpoints_follow_the_umask_and_clean_up_stale_temporaries(tmp_path, small_model):
    import os

    stale = tmp_path / ".last.pt.k2j3h4.tmp"  # left by a write that was killed
    stale.write_bytes(b"partial")
    old = os.umask(0o027)
    try:
        save_model(tmp_path / "last.pt", small_model)
    finally:
        os.umask(old)
    assert (tmp_path / "last.pt").stat().st_mode & 0o777 == 0o640
    assert not stale.exists()


def test_safetensors_round_trip_and_convert(tmp_path, small_model):
    save_model(tmp_path / "m.pt", small_model)
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "m.pt"), str(tmp_path / "m.safetensors")])
    assert result.exit_code == 0, result.output
    assert b"pickle" not in (tmp_path / "m.safetensors").read_bytes()[:16]
    model = load_model(tmp_path / "m.safetensors")
    x = torch.randn(1, 3, 33, 47)
    with torch.no_grad():
        assert torch.equal(model(x), small_model.eval()(x))
    assert model.meta.classes == small_model.meta.classes and model.meta.arch == small_model.meta.arch
    info = CliRunner().invoke(main, ["info", str(tmp_path / "m.safetensors")])
    assert "deeplab checkpoint" in info.output
    back = CliRunner().invoke(main, ["convert", str(tmp_path / "m.safetensors"), str(tmp_path / "again.pt")])
    assert back.exit_code == 0 and torch.equal(load_model(tmp_path / "again.pt")(x), model(x))


def test_bad_safetensors_is_a_one_line_error(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "junk.safetensors")


def test_weights_that_are_not_finite_or_not_floating_point_are_refused(tmp_path):
    """Loading never hands back a model that would write NaN labels, nor integers read as weights."""
    import safetensors.torch

    from deeplab.checkpoint import CheckpointError
    from deeplab.models import build_model, load_model, save_model

    model = build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25)
    save_model(tmp_path / "good.safetensors", model)
    state = safetensors.torch.load_file(tmp_path / "good.safetensors")
    metadata = safetensors.safe_open(tmp_path / "good.safetensors", "pt").metadata()
    nan = dict(state)
    nan["classifier.4.weight"] = torch.full_like(nan["classifier.4.weight"], float("inf"))
    safetensors.torch.save_file(nan, tmp_path / "inf.safetensors", metadata=metadata)
    with pytest.raises(
        CheckpointError, match=r"inf.safetensors: weights hold NaN or infinity, first in classifier.4.weight"
    ):
        load_model(tmp_path / "inf.safetensors")
    mistyped = dict(state)
    mistyped["classifier.4.weight"] = state["classifier.4.weight"].view(torch.int32)  # the same bytes, as I32
    safetensors.torch.save_file(mistyped, tmp_path / "i32.safetensors", metadata=metadata)
    with pytest.raises(CheckpointError, match=r"i32.safetensors: tensor classifier.4.weight is stored as torch.int32"):
        load_model(tmp_path / "i32.safetensors")
    save_model(tmp_path / "good.pt", model)
    raw = torch.load(tmp_path / "good.pt", weights_only=True)
    raw["state_dict"]["backbone.features.0.0.weight"][0, 0, 0, 0] = float("nan")
    torch.save(raw, tmp_path / "nan.pt")
    with pytest.raises(
        CheckpointError, match=r"nan.pt: weights hold NaN or infinity, first in backbone.features.0.0.weight"
    ):
        load_model(tmp_path / "nan.pt")


def test_a_full_disk_is_one_line_and_keeps_the_earlier_file(tmp_path):
    """Over a file-size limit (as on a full disk) torch's zip writer fails: one line naming the file,
    the earlier checkpoint unchanged, no temporary left."""
    from child import run_child

    code = f"""
import json, resource
from pathlib import Path
from deeplab.models import build_model, save_model
out = Path({str(tmp_path)!r})
save_model(out / "last.pt", build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25))
before = (out / "last.pt").read_bytes()
resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 4096, resource.RLIM_INFINITY))
try:
    save_model(out / "last.pt", build_model("deeplabv3-mobilenetv2", num_classes=3))
    message = "written"
except ValueError as err:
    message = str(err)
print(json.dumps([message, (out / "last.pt").read_bytes() == before, sorted(p.name for p in out.iterdir())]))
"""
    message, unchanged, files = run_child(code)
    assert (
        message
        == f"{tmp_path / 'last.pt'}: cannot write (no space left on the device, or over a file size limit); any earlier file is unchanged"
    )
    assert unchanged and files == ["last.pt"]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_an_int8_graph_travels_with_its_weights(tmp_path, suffix):
    """deeplab quantize's graph is stored in the checkpoint (tensors of bytes, safetensors too), loads
    back with the weights, and is dropped when overrides change the network it was made for."""
    model = build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25)
    model.meta.int8 = {
        "xml": torch.arange(5, dtype=torch.uint8),
        "bin": torch.arange(7, dtype=torch.uint8),
        "tools": "t",
        "images": 4,
    }
    save_model(tmp_path / f"q{suffix}", model)
    loaded = load_model(tmp_path / f"q{suffix}").meta.int8
    assert torch.equal(loaded["xml"], model.meta.int8["xml"]) and torch.equal(loaded["bin"], model.meta.int8["bin"])
    assert loaded["images"] == 4 and load_model(tmp_path / f"q{suffix}", output_stride=8).meta.int8 is None
    assert (
        "int8:     calibrated on 4 images (t)"
        in CliRunner().invoke(main, ["info", str(tmp_path / f"q{suffix}")]).output
    )
