"""Backbone weights from ImageNet files and from the backbone of any segmentation checkpoint."""

import pytest
import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats import read
from deeplab.models import build_model, load_backbone_weights, save_model
from deeplab.models.named import weights_path


def test_the_backbone_of_the_shipped_real_weights():
    model = build_model("deeplabv3-mobilenetv2", num_classes=7)
    head_before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    report = load_backbone_weights(model, "voc-mobilenetv2")
    tf = read(weights_path("voc-mobilenetv2"))
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, tf.state_dict[f"backbone.{key}"]), key
    assert all(torch.equal(v, head_before[k]) for k, v in model.classifier.state_dict().items())
    assert model.meta.mean == tf.fields["mean"] != build_model("deeplabv3-mobilenetv2").meta.mean  # TF's input scale
    assert model.meta.std == tf.fields["std"]
    assert "backbone tensors from the backbone of a deeplabv3-mobilenetv2-tf" in report


def test_the_backbone_of_our_own_checkpoint(tmp_path):
    source = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.25)
    save_model(tmp_path / "v3plus.pt", source)
    model = build_model("deeplabv3-mobilenetv2", num_classes=5, width_mult=0.25)
    load_backbone_weights(model, tmp_path / "v3plus.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(model.backbone.state_dict().values(), source.backbone.state_dict().values())
    )


def test_a_backbone_of_another_network_is_one_line(tmp_path):
    model = build_model("deeplabv3-mobilenetv2", num_classes=5, width_mult=0.5)
    with pytest.raises(CheckpointError, match=r"voc-mobilenetv2: not weights for a MobileNetV2 backbone: .*shape"):
        load_backbone_weights(model, "voc-mobilenetv2")
    with pytest.raises(CheckpointError, match="nowhere.pt: no such checkpoint file"):
        load_backbone_weights(model, tmp_path / "nowhere.pt")
