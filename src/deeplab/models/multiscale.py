"""Multi-scale inputs (MSC, DeepLab v2 Sec. 4.1): the model runs on rescaled copies of the input and
the logits, resized back to the input size, are fused.

Fusion means the same as in ``deeplab.Segmenter``: "max" is the element-wise maximum of the logits
(v2's MSC); "mean" averages the softmax probabilities, returned as their logarithm, so that the
training loss (cross entropy on log-probabilities) and the argmax agree with inference.

In training the output is the dict every training output is, ``{"out": fused, "per_scale": [...]}``,
since v2 trains on each scale and on the fused scores. The wrapper has no parameters of its own:
its state dict is ``model.*``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class MultiScale(nn.Module):
    """Eval: ``msc(x)`` -> fused scores N,C,H,W; train: -> {"out": fused, "per_scale": [N,C,H,W, ...]}."""

    def __init__(self, model: nn.Module, scales: tuple[float, ...] = (1.0, 0.75, 0.5), fusion: str = "max") -> None:
        super().__init__()
        if not scales or min(scales) <= 0:
            raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales!r}")
        if fusion not in ("max", "mean"):
            raise ValueError(f"fusion must be 'max' or 'mean', got {fusion!r}")
        self.model = model
        self.scales = tuple(float(s) for s in scales)
        self.fusion = fusion

    @property
    def meta(self):  # noqa: ANN201 - the wrapped model's ModelMeta
        """The wrapped model's metadata."""
        return self.model.meta

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor | list[torch.Tensor]]:
        size = x.shape[-2:]
        per_scale = []
        for scale in self.scales:
            scaled_size = [max(1, round(s * scale)) for s in size]
            inp = x if scale == 1.0 else F.interpolate(x, size=scaled_size, mode="bilinear", align_corners=False)
            logits = self.model(inp)
            if logits.shape[-2:] != size:
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            per_scale.append(logits)
        stacked = torch.stack(per_scale)
        if self.fusion == "max":
            fused = stacked.amax(0)
        else:  # log of the mean probability
            fused = torch.logsumexp(stacked.float().log_softmax(2), 0) - math.log(len(per_scale))
        return {"out": fused, "per_scale": per_scale} if self.training else fused
