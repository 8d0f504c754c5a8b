"""Helpers writing tiny fake data set trees (imported by the tests in this folder)."""

from pathlib import Path

import numpy as np
from PIL import Image

from deeplab.imageio import write_label_png


def write(path: Path, array: np.ndarray) -> Path:
    """Write an RGB image (HxWx3, .jpg/.png) or an index mask (HxW, palette PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        Image.fromarray(array.astype(np.uint8)).save(path)
    else:
        write_label_png(path, array, [(k, k, k) for k in range(256)])
    return path


def image(h=12, w=16, seed=0):
    """A random HxWx3 uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def labels(values, h=12, w=16):
    """An HxW uint8 mask whose columns cycle through `values`."""
    return np.tile(np.resize(np.asarray(values, dtype=np.uint8), w), (h, 1))
