"""The training loss: cross entropy over non-ignored pixels, with aux and MSC terms."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from deeplab.constants import IGNORE_INDEX


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Mean cross entropy over the non-ignored pixels (0, not NaN, when every pixel is ignored)."""
    total = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="sum")
    return total / (target != ignore_index).sum().clamp(min=1)


def segmentation_loss(
    output: torch.Tensor | dict[str, Any], target: torch.Tensor, aux_weight: float = 0.4
) -> torch.Tensor:
    """Loss of a training output, the dict {"out", "aux"?, "per_scale"?} (a bare tensor = {"out"}):
    cross entropy of "out", plus aux_weight x that of "aux", plus that of every scale (v2's MSC)."""
    if not isinstance(output, dict):
        output = {"out": output}
    loss = cross_entropy(output["out"], target)
    if "aux" in output:
        loss = loss + aux_weight * cross_entropy(output["aux"], target)
    for scores in output.get("per_scale", ()):
        loss = loss + cross_entropy(scores, target)
    return loss
