"""PASCAL VOC class names and colour map, shared by the model metadata and the visualisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

VOC_CLASSES: list[str] = [
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
]


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The standard VOC colour map: the bits of the class index interleaved into R, G, B."""
    palette = []
    for index in range(n):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette.append((r, g, b))
    return palette


def default_classes(num_classes: int) -> list[str]:
    """VOC names for 21 classes, otherwise ``class_0``, ``class_1``, ..."""
    if num_classes == len(VOC_CLASSES):
        return list(VOC_CLASSES)
    return [f"class_{i}" for i in range(num_classes)]


VOC_VOID = (224, 224, 192)  # the colour of VOC's "void" border pixels in palette-coloured masks (label 255)


def labels_from_colours(
    rgb: np.ndarray, palette: Sequence[Sequence[int]], void: Sequence[int] | None = VOC_VOID
) -> np.ndarray:
    """HxW uint8 labels of an HxWx3 mask stored as palette colours: class k where the pixel has
    palette[k]'s colour, 255 for ``void`` and for colours not in the palette."""
    keys = rgb[..., 0].astype(np.int64) << 16 | rgb[..., 1].astype(np.int64) << 8 | rgb[..., 2]
    labels = np.full(keys.shape, 255, np.uint8)
    for index, (r, g, b) in enumerate(palette):
        if void is not None and (r, g, b) == tuple(void):
            continue
        labels[keys == (r << 16 | g << 8 | b)] = index
    return labels
