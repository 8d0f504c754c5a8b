"""The training loss: cross entropy over non-ignored pixels, with aux and MSC terms; optionally
weighted per class (e.g. median-frequency balancing) and restricted to the hardest pixels (the
hard-pixel mining of TensorFlow's DeepLab)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deeplab.constants import IGNORE_INDEX


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    class_weights: torch.Tensor | None = None,
    top_k: float = 1.0,
) -> torch.Tensor:
    """Mean cross entropy over the non-ignored pixels (0, not NaN, when every pixel is ignored).

    ``class_weights`` weight each pixel's loss by its true class (the mean then divides by the sum
    of the weights, as torch's weighted cross entropy). ``top_k`` < 1 keeps only that share of all
    the pixels, those with the largest (weighted) loss, averaged over the non-zero ones: TensorFlow
    DeepLab's ``top_k_percent_pixels``."""
    if class_weights is None and top_k >= 1.0:
        total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
        return total / (target != ignore_index).sum().clamp(min=1)
    weight = None if class_weights is None else class_weights.to(logits.device, torch.float32)
    per_pixel = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="none")
    if top_k >= 1.0:
        valid = target != ignore_index
        assert weight is not None
        return per_pixel.sum() / weight[target[valid]].sum().clamp(min=1e-12)
    top = per_pixel.flatten().topk(max(1, int(top_k * per_pixel.numel()))).values
    return top.sum() / (top != 0).sum().clamp(min=1)


def top_k_share(iteration: int, top_k_percent_pixels: float, hard_example_mining_step: int) -> float:
    """The share of pixels kept at ``iteration``: from 1.0 down to ``top_k_percent_pixels`` linearly
    over ``hard_example_mining_step`` iterations (0: at once), as TensorFlow's DeepLab anneals it."""
    if hard_example_mining_step <= 0:
        return top_k_percent_pixels
    ratio = min(1.0, iteration / hard_example_mining_step)
    return 1.0 - ratio * (1.0 - top_k_percent_pixels)


def median_frequency_weights(pixels: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Median-frequency balancing (Eigen & Fergus 2015): freq(c) = pixels of c / pixels of the images
    holding c, weight(c) = median(freq) / freq(c); classes never seen get 1."""
    seen = pixels > 0
    freq = np.where(seen, pixels / np.maximum(image_pixels, 1), 0.0)
    median = float(np.median(freq[seen])) if seen.any() else 1.0
    return [float(median / f) if s else 1.0 for f, s in zip(freq, seen)]


def segmentation_loss(
    output: torch.Tensor | dict[str, Any],
    target: torch.Tensor,
    aux_weight: float = 0.4,
    class_weights: torch.Tensor | None = None,
    top_k: float = 1.0,
) -> torch.Tensor:
    """Loss of a training output, the dict {"out", "aux"?, "per_scale"?} (a bare tensor = {"out"}):
    cross entropy of "out", plus aux_weight x that of "aux", plus that of every scale (v2's MSC);
    each term weighted and mined as ``cross_entropy`` says."""
    if not isinstance(output, dict):
        output = {"out": output}

    def term(scores: torch.Tensor) -> torch.Tensor:
        return cross_entropy(scores, target, class_weights=class_weights, top_k=top_k)

    loss = term(output["out"])
    if "aux" in output:
        loss = loss + aux_weight * term(output["aux"])
    for scores in output.get("per_scale", ()):
        loss = loss + term(scores)
    return loss
