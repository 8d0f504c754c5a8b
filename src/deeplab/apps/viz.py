"""Colouring label maps, blending them over images, and legends of the classes present."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from deeplab.palette import default_classes, voc_palette

IGNORE_COLOUR = (224, 224, 192)  # VOC's colour for the ignore label 255


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Map an HxW label map to HxWx3 uint8 colours; 255 (ignore) gets VOC's cream colour."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[255] = IGNORE_COLOUR
    colours = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)[:255]
    table[: len(colours)] = colours
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("labels must lie in 0..255 to be coloured")
    return table[labels.astype(np.uint8)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend the coloured label map over an HxWx3 uint8 image (alpha = weight of the colours)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if image.shape[:2] != np.shape(labels):
        raise ValueError(f"image {image.shape[:2]} and labels {np.shape(labels)} differ in size")
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    for top in range(0, len(out), 256):  # in bands of rows: a 4000x3000 photo needs no float copies
        rows = slice(top, top + 256)
        colours = colorize(labels[rows], palette).astype(np.float32)
        blended = (1.0 - alpha) * image[rows, :, :3].astype(np.float32) + alpha * colours
        out[rows] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


def draw_legend(
    image: np.ndarray,
    class_ids: Sequence[int],
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
) -> np.ndarray:
    """Append a white panel to the right of the image naming each class with its colour swatch."""
    height = image.shape[0]
    row = max(12, min(24, height // max(len(class_ids), 1)))
    font = ImageFont.load_default(size=max(8, row - 4))
    names = [classes[i] if i < len(classes) else f"class {i}" for i in class_ids]
    text_w = max((font.getlength(n) for n in names), default=0)
    panel_h = max(height, 8 + len(names) * row)
    panel = Image.new("RGB", (int(text_w) + row + 12, panel_h), (255, 255, 255))
    draw = ImageDraw.Draw(panel)
    colours = colorize(np.asarray(class_ids, dtype=np.int64), palette)
    for k, (name, colour) in enumerate(zip(names, colours)):
        top = 4 + k * row
        draw.rectangle([4, top, 4 + row - 4, top + row - 4], fill=tuple(int(c) for c in colour))
        draw.text((row + 6, top), name, fill=(0, 0, 0), font=font)
    canvas = np.full((panel_h, image.shape[1], 3), 255, dtype=np.uint8)
    canvas[:height] = image
    return np.concatenate([canvas, np.asarray(panel)], axis=1)


def overlay_with_legend(
    image: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
) -> np.ndarray:
    """Overlay of the label map on the image, with a legend of the classes present."""
    present = [int(c) for c in np.flatnonzero(np.bincount(np.asarray(labels).ravel(), minlength=256)) if c != 255]
    return draw_legend(overlay(image, labels, palette, alpha), present, classes, palette)


def classes_and_palette(meta: Any) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours of a model's meta; the VOC palette where it carries none.

    Raises ValueError when the class names or the palette do not match the class count.
    """
    num_classes = int(meta.config["num_classes"])
    if meta.palette:
        palette = [tuple(int(c) for c in rgb) for rgb in meta.palette]
    else:
        palette = [tuple(int(c) for c in rgb) for rgb in voc_palette(num_classes)]
    if len(palette) != num_classes:
        raise ValueError(f"the model has {num_classes} classes but its palette {len(palette)} colours")

    classes = list(meta.classes or []) or default_classes(num_classes)
    if len(classes) != num_classes:
        raise ValueError(f"the model has {num_classes} classes but {len(classes)} class names")
    return classes, [(int(r), int(g), int(b)) for r, g, b in palette]
