import pytest
import torch
from click.testing import CliRunner

from deeplab import load_model
from deeplab.apps.cli import main
from deeplab.checkpoint import CheckpointError
from tv import randomise_batchnorm

CASES = [("v3", 50, 16), ("v3plus", 50, 16), ("v3plus", 101, 8)]
CASES += [("v3", "mobilenetv2", 16), ("v3plus", "mobilenetv2", 16), ("v3plus", "mobilenetv2", 8)]


@pytest.mark.parametrize("kind, depth, output_stride", CASES)
def test_vainf_checkpoints_give_vainfs_logits(tmp_path, tv, kind, depth, output_stride):
    from peers import VainFModel

    torch.manual_seed(0)
    reference = VainFModel(tv, kind, depth, num_classes=5, output_stride=output_stride).eval()
    randomise_batchnorm(reference)
    path = tmp_path / "best_vainf.pth"
    torch.save({"cur_itrs": 30000, "model_state": reference.state_dict(), "best_score": 0.77}, path)
    model = load_model(path, output_stride=output_stride)
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        theirs, ours = reference(x), model(x)
    assert ours.shape == theirs.shape == (1, 5, 65, 81)
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4
    info = CliRunner().invoke(main, ["info", str(path)])
    assert "VainF/DeepLabV3Plus-Pytorch checkpoint" in info.output


def test_an_unknown_vainf_model_is_a_one_line_error(tmp_path):
    torch.save({"model_state": {"backbone.features.0.weight": torch.zeros(1)}}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"m\.pth: a VainF checkpoint \('model_state'\) of an unknown model"):
        load_model(tmp_path / "m.pth")
