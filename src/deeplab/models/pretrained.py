"""ImageNet backbone weights (torchvision's ResNet / VGG-16 / MobileNetV2 files) into a DeepLab."""

from __future__ import annotations

import os

import torch
from torch import nn

from deeplab.checkpoint import CheckpointError, key_problems, read_checkpoint
from deeplab.models.deeplab import unwrap


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ImageNet state dict file into ``model.backbone``: strict on the
    backbone's keys, ignoring the ImageNet classifier (``fc.*``, ``classifier.*``)."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a backbone state dict (expected a dict of tensors)")
    backbone = unwrap(model).backbone
    state = {k: v for k, v in state.items() if not k.startswith(backbone.pretrained_ignore)}
    own = backbone.state_dict()
    problems = key_problems(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        shape_mismatch=[k for k in state if k in own and state[k].shape != own[k].shape],
    )
    if problems:
        raise CheckpointError(f"{path}: not weights for a {type(backbone).__name__} backbone: {problems}")
    backbone.load_state_dict(state)
