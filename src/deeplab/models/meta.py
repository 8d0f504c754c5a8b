"""ModelMeta: what a model carries besides its weights, so that a checkpoint is all a user needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deeplab.constants import IMAGENET_MEAN, IMAGENET_STD
from deeplab.palette import default_classes, voc_palette


@dataclass
class ModelMeta:
    """Preset name, full build config, class names, palette and input normalisation (RGB, 0-1 scale)."""

    arch: str
    config: dict[str, Any]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)
    int8: dict[str, Any] | None = None  # the quantised graph of these weights (``deeplab quantize``), if any


def default_meta(arch: str, config: dict[str, Any]) -> ModelMeta:
    """Meta with VOC names (21 classes) or ``class_i``, the VOC palette and ImageNet mean/std."""
    n = config["num_classes"]
    return ModelMeta(arch, dict(config), default_classes(n), voc_palette(n))
