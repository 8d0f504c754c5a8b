"""Masks stored as palette colours decode to the indices of the same labels."""

import numpy as np

from deeplab.palette import VOC_VOID, labels_from_colours, voc_palette


def test_palette_colours_decode_to_their_indices():
    labels = np.array([[0, 3, 15], [255, 20, 3]], np.uint8)
    palette = voc_palette(21)
    rgb = np.array([[palette[v] if v != 255 else VOC_VOID for v in row] for row in labels], np.uint8)
    np.testing.assert_array_equal(labels_from_colours(rgb, palette), labels)
    rgb[0, 0] = (1, 2, 3)  # a colour outside the palette: ignored, not background
    assert labels_from_colours(rgb, palette)[0, 0] == 255
