"""Network-like class probabilities made from a label map, to show and test the CRF without a model.

Class evidence at 1/stride resolution, noisy, bilinearly upsampled: the way the logits of a
DeepLab at output stride 8 look, blurry at object boundaries.
"""

from __future__ import annotations

import numpy as np
import torch


def network_probs(
    gt: np.ndarray, num_classes: int, seed: int = 0, stride: int = 8, strength: float = 6.0, noise: float = 2.0
) -> np.ndarray:
    """CxHxW float32 softmax from coarse, noisy one-hot evidence of ``gt`` upsampled bilinearly."""
    rng = np.random.default_rng(seed)
    h, w = gt.shape
    coarse = gt[stride // 2 :: stride, stride // 2 :: stride]
    logits = rng.normal(0.0, noise, (num_classes, *coarse.shape)).astype(np.float32)
    rows, cols = np.indices(coarse.shape)
    logits[np.minimum(coarse, num_classes - 1), rows, cols] += strength
    up = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(h, w), mode="bilinear", align_corners=False
    )
    return torch.softmax(up[0], dim=0).numpy().astype(np.float32)
