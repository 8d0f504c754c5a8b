"""The real material of ../shared/real (TensorFlow's DeepLab zoo models, real photos with truth) and
the TFLite runtime, the reference for those models. Tests that need either skip with a reason."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplab.imageio import read_image
from deeplab.palette import VOC_VOID, labels_from_colours, voc_palette

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
MODELS = {"depth 1.0": "deeplabv3_mnv2_pascal_quant.tflite", "depth 0.5": "deeplabv3_mnv2_dm05_pascal_quant.tflite"}
SAMPLES = ("1", "23", "114")  # vainf-samples/N_image.png with N_target.png


def real_dir() -> Path:
    """../shared/real, or a skip where this checkout has none."""
    if not (REAL / "coral").is_dir():
        pytest.skip(f"no real material at {REAL}")
    return REAL


def model_file(name: str) -> Path:
    return real_dir() / "coral" / MODELS[name]


def bird() -> tuple[np.ndarray, np.ndarray]:
    """The Coral bird photo and its mask (0 background, 3 bird, 1-2 elsewhere)."""
    coral = real_dir() / "coral"
    return read_image(coral / "bird_segmentation.bmp"), np.asarray(Image.open(coral / "bird_segmentation_mask.bmp"))


def voc_sample(n: str) -> tuple[np.ndarray, np.ndarray]:
    """A VOC val photo and its labels, decoded from the VOC palette (void -> 255)."""
    folder = real_dir() / "vainf-samples"
    target = np.asarray(Image.open(folder / f"{n}_target.png").convert("RGB"))
    labels = labels_from_colours(target, voc_palette(21))
    unknown = (labels == 255) & ~(target == VOC_VOID).all(-1)
    assert not unknown.any(), f"{n}_target.png has colours outside the VOC palette"
    return read_image(folder / f"{n}_image.png"), labels


@cache
def _interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        pytest.skip("the TFLite runtime (ai-edge-litert) is not installed")
    interpreter = Interpreter(str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def reference_labels(path: Path, rgb: np.ndarray) -> np.ndarray:
    """The TFLite runtime's own labels for a 513x513 RGB uint8 image."""
    interpreter = _interpreter(path)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], rgb[None])
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


def iou(labels: np.ndarray, truth: np.ndarray, cls: int) -> float:
    return float(((labels == cls) & (truth == cls)).sum() / ((labels == cls) | (truth == cls)).sum())


def pixel_accuracy(labels: np.ndarray, truth: np.ndarray) -> float:
    valid = truth != 255
    return float((labels[valid] == truth[valid]).mean())
