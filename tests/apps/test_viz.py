import numpy as np
import pytest

from deeplab.apps.viz import colorize, draw_legend, overlay, overlay_with_legend

PALETTE = [(0, 0, 0), (128, 0, 0), (0, 128, 0)]


def test_colorize_maps_labels_and_ignore():
    labels = np.array([[0, 1], [2, 255]])
    colours = colorize(labels, PALETTE)
    assert colours.dtype == np.uint8 and colours.shape == (2, 2, 3)
    assert colours[0, 1].tolist() == [128, 0, 0] and colours[1, 0].tolist() == [0, 128, 0]
    assert colours[1, 1].tolist() == [224, 224, 192]


def test_overlay_blends_with_alpha():
    image = np.full((2, 2, 3), 200, np.uint8)
    labels = np.array([[1, 1], [0, 0]])
    out = overlay(image, labels, PALETTE, alpha=0.25)
    assert out[0, 0].tolist() == [182, 150, 150]  # 0.75*200 + 0.25*(128, 0, 0)
    np.testing.assert_array_equal(overlay(image, labels, PALETTE, alpha=0.0), image)
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, labels, PALETTE, alpha=1.5)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(image, labels[:1], PALETTE)


def test_legend_lists_the_classes_present_with_their_colours():
    image = np.zeros((60, 40, 3), np.uint8)
    labels = np.zeros((60, 40), np.int64)
    labels[:, 20:] = 2
    out = overlay_with_legend(image, labels, ["background", "a", "b"], PALETTE, alpha=1.0)
    assert out.shape[0] == 60 and out.shape[1] > 40
    panel = out[:, 40:]
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    assert (0, 128, 0) in colours and (128, 0, 0) not in colours  # class 1 is absent


def test_legend_grows_below_a_small_image_for_many_classes():
    image = np.zeros((10, 10, 3), np.uint8)
    out = draw_legend(image, list(range(3)), ["x", "y", "z"], PALETTE)
    assert out.shape[0] > 10 and (out[10:, :10] == 255).all()


def test_classes_and_palette_from_meta_with_voc_defaults():
    from types import SimpleNamespace

    from deeplab.apps.viz import classes_and_palette

    voc = SimpleNamespace(config={"num_classes": 21}, classes=[], palette=[])
    classes, palette = classes_and_palette(voc)
    assert classes[15] == "person" and palette[1] == (128, 0, 0) and len(palette) == 21
    bad = SimpleNamespace(config={"num_classes": 3}, classes=["a", "b", "c"], palette=PALETTE[:2])
    with pytest.raises(ValueError, match="3 classes but its palette 2 colours"):
        classes_and_palette(bad)
    names = SimpleNamespace(config={"num_classes": 3}, classes=["a"], palette=PALETTE)
    with pytest.raises(ValueError, match="3 classes but 1 class names"):
        classes_and_palette(names)
