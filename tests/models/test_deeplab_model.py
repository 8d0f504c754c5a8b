import pytest
import torch

from deeplab import build_model
from deeplab.models.presets import PRESETS


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_on_odd_sizes(name):
    model = build_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 33, 47))
    assert out.shape == (1, 3, 33, 47) and torch.isfinite(out).all()
    assert model.output_stride == PRESETS[name].output_stride == model.meta.config["output_stride"]
    assert model.meta.arch == name and model.meta.classes == ["class_0", "class_1", "class_2"]


def test_return_aux_gives_both_heads_at_input_size():
    model = build_model("deeplabv3-resnet50", num_classes=4, aux=True, output_stride=32).eval()
    with torch.no_grad():
        result = model(torch.randn(1, 3, 33, 47), return_aux=True)
    assert set(result) == {"out", "aux"} and result["aux"].shape == result["out"].shape == (1, 4, 33, 47)
    plain = build_model("deeplabv3-mobilenetv2", num_classes=4).eval()
    with torch.no_grad():
        assert set(plain(torch.randn(1, 3, 33, 47), return_aux=True)) == {"out"}
    assert plain.aux_classifier is None


def test_v3_output_stride_8_doubles_the_rates():
    model = build_model("deeplabv3-resnet50", output_stride=8)
    assert model.meta.config["atrous_rates"] == (12, 24, 36)
    assert [model.classifier[0].convs[i][0].dilation[0] for i in (1, 2, 3)] == [12, 24, 36]
    assert model.backbone.unit_rates["layer4"] == [4, 8, 16]


def test_v3plus_decoder_reads_layer1():
    model = build_model("deeplabv3plus-resnet101", num_classes=2)
    assert model.classifier.reduce[0].in_channels == 256 and model.classifier.reduce[0].out_channels == 48


def test_training_step_updates_the_light_model():
    model = build_model("deeplabv3plus-mobilenetv2", num_classes=3).train()
    x, y = torch.randn(2, 3, 33, 47), torch.randint(0, 3, (2, 33, 47))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.classifier.parameters())
