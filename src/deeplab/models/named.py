"""Weights that ship with the package, by name: ``load_model("voc-mobilenetv2")``, ``--weights
voc-mobilenetv2``. Never a download: each entry is a file in ``deeplab/assets`` with its source and
licence; a new entry is one row of ``NAMED_WEIGHTS``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path


@dataclass(frozen=True)
class NamedWeights:
    """A shipped checkpoint: its file in deeplab/assets, what it is, where it comes from, its figure."""

    file: str
    description: str
    source: str
    licence: str
    published: str  # the publisher's accuracy figure


NAMED_WEIGHTS: dict[str, NamedWeights] = {
    "voc-mobilenetv2": NamedWeights(
        "voc-mobilenetv2.tflite",
        "DeepLab v3, MobileNetV2 depth 1.0, output stride 16; COCO + PASCAL VOC trainaug; 21 VOC classes; 8-bit",
        "TensorFlow DeepLab model zoo (deeplabv3_mnv2_pascal_quant.tflite, google-coral/test_data 104342d)",
        "Apache-2.0 (deeplab/assets/LICENSE-tensorflow-deeplab)",
        "74.26% mIoU on VOC 2012 val (TensorFlow DeepLab's quantisation page)",
    ),
    "voc-mobilenetv2-dm05": NamedWeights(
        "voc-mobilenetv2-dm05.tflite",
        "DeepLab v3, MobileNetV2 depth 0.5, output stride 16; COCO + PASCAL VOC trainaug; 21 VOC classes; 8-bit",
        "TensorFlow DeepLab model zoo (deeplabv3_mnv2_dm05_pascal_quant.tflite, google-coral/test_data 104342d)",
        "Apache-2.0 (deeplab/assets/LICENSE-tensorflow-deeplab)",
        "69.65% mIoU on VOC 2012 val (TensorFlow DeepLab's quantisation page)",
    ),
    "shapes-mobilenetv2": NamedWeights(
        "shapes-mobilenetv2.pt",
        "DeepLab v3+ MobileNetV2 trained here from scratch on the generated shapes scenes; 7 classes",
        "this project: configs/shapes.yaml, then configs/shapes-finetune.yaml",
        "MIT",
        "80.35% mIoU on the 200 shapes val scenes, single scale (docs/benchmarks.md)",
    ),
}
DEFAULT_WEIGHTS = "voc-mobilenetv2"  # what predict uses without --weights


def weights_path(name_or_path: str | os.PathLike) -> Path:
    """The file a --weights value means: an existing path as it is, else a shipped name's file."""
    path = Path(name_or_path)
    if not path.exists() and str(name_or_path) in NAMED_WEIGHTS:
        return Path(str(resources.files("deeplab") / "assets" / NAMED_WEIGHTS[str(name_or_path)].file))
    return path


def named_weights_table() -> str:
    """The shipped weights, a line each with their source and figure."""
    rows = []
    for name, entry in NAMED_WEIGHTS.items():
        rows.append(f"{name:<22} {entry.description}")
        rows.append(f"{'':<22} {entry.published}; from {entry.source}; {entry.licence}")
    return "\n".join(rows)
