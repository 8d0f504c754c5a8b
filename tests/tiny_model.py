"""A tiny stand-in that follows the model interface (normalised N,3,H,W -> logits at input size)."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


class TinyNet(nn.Module):
    """Two strided conv+BN+ReLU blocks and a 1x1 classifier: output stride 4, small receptive field."""

    def __init__(self, num_classes: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
        )
        self.classifier = nn.Conv2d(8, num_classes, 1)
        nn.init.normal_(self.classifier.weight, std=2.0)  # confident, well-separated classes
        for m in self.modules():  # non-trivial running statistics, so folding is exercised
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        self.output_stride = 4
        self.meta = SimpleNamespace(
            arch="tiny",
            config={"num_classes": num_classes},
            classes=[f"c{i}" for i in range(num_classes)],
            palette=[(60 * i, 255 - 60 * i, 30 * i) for i in range(num_classes)],
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        )
        self.eval()

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> torch.Tensor:
        out = F.interpolate(self.classifier(self.backbone(x)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {"out": out} if return_aux else out


def tiny_image(height: int = 48, width: int = 64, seed: int = 0):
    """A smooth random RGB uint8 image (blocks of colour), so predictions are not pure noise."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, 8, 0), 8, 1)[:height, :width].copy()
