import pytest
import torch
from click.testing import CliRunner

from deeplab import build_model
from deeplab.apps.cli import main
from deeplab.models.presets import PRESETS, complexity, resolve_config
from deeplab.palette import VOC_CLASSES, voc_palette


def test_unknown_preset_lists_the_valid_names():
    with pytest.raises(
        ValueError, match="unknown model preset 'deeplabv4'.*deeplabv1-vgg16-largefov.*deeplabv3-mobilenetv2"
    ):
        build_model("deeplabv4")


@pytest.mark.parametrize(
    "overrides, argument",
    [
        ({"output_stride": 4}, "output_stride"),
        ({"output_stride": "16"}, "output_stride"),
        ({"atrous_rates": ()}, "atrous_rates"),
        ({"atrous_rates": (6, 12, 0)}, "atrous_rates"),
        ({"atrous_rates": (6, 12.5, 18)}, "atrous_rates"),
        ({"multi_grid": (1, 2)}, "multi_grid"),
        ({"width_mult": 0.5}, "width_mult"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_overrides_name_the_argument(overrides, argument):
    with pytest.raises(ValueError, match=argument):
        resolve_config("deeplabv3-resnet50", **overrides)


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        resolve_config("deeplabv3-mobilenetv2", 0)


def test_rates_follow_output_stride_unless_given():
    assert resolve_config("deeplabv3-resnet101", output_stride=8)["atrous_rates"] == (12, 24, 36)
    assert resolve_config("deeplabv3-resnet101", output_stride=32)["atrous_rates"] == (3, 6, 9)
    assert resolve_config("deeplabv3-resnet101", output_stride=8, atrous_rates=(1, 2, 3))["atrous_rates"] == (1, 2, 3)
    assert resolve_config("deeplabv2-resnet101")["atrous_rates"] == (6, 12, 18, 24)
    assert resolve_config("deeplabv1-vgg16-largefov", output_stride=16)["atrous_rates"] == (6,)


def test_meta_defaults():
    model = build_model("deeplabv3-mobilenetv2")
    assert model.meta.classes == VOC_CLASSES and model.meta.palette == voc_palette(21)
    assert model.meta.mean == (0.485, 0.456, 0.406) and model.meta.std == (0.229, 0.224, 0.225)
    assert model.meta.config == {"num_classes": 21, "output_stride": 16, "atrous_rates": (6, 12, 18), "width_mult": 1.0}
    assert build_model("deeplabv3-mobilenetv2", num_classes=2).meta.classes == ["class_0", "class_1"]


def test_voc_palette_is_the_standard_colour_map():
    palette = voc_palette(256)
    assert palette[:4] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0)]
    assert palette[15] == (192, 128, 128) and palette[20] == (0, 64, 128) and palette[255] == (224, 224, 192)


def test_complexity_is_counted_without_compute():
    params, gflops = complexity("deeplabv1-vgg16-largefov")
    assert abs(params / 1e6 - 20.5) < 0.05
    # VGG-16 conv1-conv5 at stride 1/2/4/8 plus fc6/fc7/fc8 at stride 8 of a 513 input: 257 GFLOPs
    assert 250 < gflops < 265
    _, small = complexity("deeplabv3-mobilenetv2", size=65)
    assert 0 < small < 1


def test_models_command_lists_every_preset():
    result = CliRunner().invoke(main, ["models", "--size", "65"])
    assert result.exit_code == 0, result.output
    for name in PRESETS:
        assert name in result.output
    assert "20.5M" in result.output


def test_ablation_overrides_single_rate_and_no_image_pooling():
    from deeplab.models.heads import ASPPPooling

    plain = build_model("deeplabv3-mobilenetv2", num_classes=3, width_mult=0.25, atrous_rates=[12], image_pooling=False)
    aspp = plain.classifier[0]
    assert len(aspp.convs) == 2 and aspp.convs[1][0].dilation == (12, 12)  # 1x1 + one 3x3 at rate 12
    assert not any(isinstance(m, ASPPPooling) for m in plain.modules())
    full = build_model("deeplabv3plus-mobilenetv2", num_classes=3, width_mult=0.25)
    assert isinstance(full.classifier.aspp.convs[-1], ASPPPooling)
    with torch.no_grad():
        assert plain.eval()(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)
    with pytest.raises(ValueError, match="atrous_rates must be one or more positive integers"):
        build_model("deeplabv3-mobilenetv2", atrous_rates=[])
    with pytest.raises(ValueError, match="image_pooling"):
        build_model("deeplabv2-resnet101", image_pooling=False)


def test_a_new_head_is_one_entry(monkeypatch):
    """A toy head with its own option, registered in HEADS alone: config, overrides and build follow."""
    from torch import nn

    from deeplab.models import presets
    from deeplab.models.presets import HEADS, Option, Part, Preset, allowed_overrides, resolve_config

    def toy(config, preset, backbone):
        return ToyHead(backbone.out_channels, config["num_classes"], config["hidden"])

    class ToyHead(nn.Sequential):
        def __init__(self, in_channels: int, num_classes: int, hidden: int) -> None:
            super().__init__(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, num_classes, 1))

        def forward(self, features):
            return super().forward(features["out"])

    monkeypatch.setitem(HEADS, "toy", Part(toy, {"hidden": Option(int, lambda preset: 16)}))
    monkeypatch.setitem(presets.PRESETS, "toy-mobilenetv2", Preset("mobilenetv2", "toy", 16, (), "a toy head"))
    preset = presets.PRESETS["toy-mobilenetv2"]
    assert "hidden" in allowed_overrides(preset) and "atrous_rates" not in allowed_overrides(preset)
    assert resolve_config("toy-mobilenetv2", 3, hidden="8")["hidden"] == 8
    model = build_model("toy-mobilenetv2", 3, width_mult=0.25, hidden=8)
    assert model.classifier[0].out_channels == 8
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="do not apply"):
        build_model("toy-mobilenetv2", 3, image_pooling=False)
