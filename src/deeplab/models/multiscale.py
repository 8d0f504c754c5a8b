"""Multi-scale inputs (MSC, DeepLab v2 Sec. 4.1): the model runs on rescaled copies of the input and
the logits, resized back to the input size, are fused by max (or mean).

In training the output also holds every scale's logits, since v2 trains on each of them and on the
fused ones. The wrapper has no parameters of its own: its state dict is ``model.*``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleOutput(NamedTuple):
    """Training output of MultiScale: fused logits and the per-scale logits, all at input size."""

    fused: torch.Tensor
    per_scale: list[torch.Tensor]


class MultiScale(nn.Module):
    """Eval: ``msc(x)`` -> fused logits; train: -> ``MultiScaleOutput(fused, per_scale)``."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor | MultiScaleOutput:
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
        fused = stacked.amax(0) if self.fusion == "max" else stacked.mean(0)
        return MultiScaleOutput(fused, per_scale) if self.training else fused
