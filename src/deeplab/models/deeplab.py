"""DeepLab = backbone + head (+ auxiliary head); logits come back at the input size.

Top-level state-dict keys: ``backbone.*`` (see resnet.py, vgg.py, mobilenet.py), ``classifier.*``
(heads.py or decoder.py), ``aux_classifier.*`` (heads.FCNHead, only when built with aux=True).
For the v3 ResNet presets these are exactly torchvision's ``deeplabv3_resnet50/101`` keys.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from deeplab.models.meta import ModelMeta


class DeepLab(nn.Module):
    """``model(x)`` -> logits N,C,H,W at the input size; ``model(x, return_aux=True)`` -> {"out", "aux"}."""

    meta: ModelMeta  # the preset, config, classes, palette and normalisation: set by build_model / load_model

    def __init__(
        self,
        backbone: nn.Module,
        classifier: nn.Module,
        aux_classifier: nn.Module | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners  # of the final upsampling (True in segmentation_models_pytorch)
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier
        self.output_stride: int = cast(Any, backbone).output_stride

    def forward(self, x: torch.Tensor, return_aux: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        logits = self.classifier(features)  # every head picks what it needs from the feature dict
        out = F.interpolate(logits, size=size, mode="bilinear", align_corners=self.align_corners)
        if not return_aux:
            return out
        result = {"out": out}
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features)
            result["aux"] = F.interpolate(aux, size=size, mode="bilinear", align_corners=self.align_corners)
        return result


def unwrap(model: nn.Module) -> DeepLab:
    """The DeepLab inside DistributedDataParallel (``.module``) and MultiScale (``.model``) wrappers."""
    inner: Any = model
    while isinstance(getattr(inner, "module", None), nn.Module) or isinstance(getattr(inner, "model", None), nn.Module):
        inner = getattr(inner, "module", None) or inner.model
    return cast(DeepLab, inner)
