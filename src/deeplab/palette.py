"""PASCAL VOC class names and colour map, shared by the model metadata and the visualisation."""

from __future__ import annotations

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
