import pytest
import torch

from deeplab import load_model
from deeplab.checkpoint import CheckpointError


def test_an_unknown_layout_names_the_closest_one_and_what_it_lacks(tmp_path):
    state = {"encoder.conv1.weight": torch.zeros(1), "encoder.layer4.0.conv1.weight": torch.zeros(1)}
    torch.save(state, tmp_path / "half.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "half.pth")
    message = str(info.value)
    assert message.startswith(str(tmp_path / "half.pth")) and "\n" not in message
    assert "closest layout: segmentation_models_pytorch (lacks segmentation_head.0.weight)" in message


def test_a_dict_sharing_no_keys_says_so(tmp_path):
    torch.save({"weights": torch.zeros(2), "epoch": 3}, tmp_path / "unknown.pth")
    with pytest.raises(CheckpointError, match="first keys: weights, epoch; no known layout"):
        load_model(tmp_path / "unknown.pth")


def test_a_recognised_layout_with_wrong_shapes_names_the_key_and_both_shapes(tmp_path, tv):
    reference = tv.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=3)
    state = reference.state_dict()
    state["backbone.layer2.0.conv2.weight"] = torch.zeros(128, 128, 1, 1)
    torch.save(state, tmp_path / "tv.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(tmp_path / "tv.pth")
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "tv.pth") in message
    assert "backbone.layer2.0.conv2.weight (file (128, 128, 1, 1), model (128, 128, 3, 3))" in message
