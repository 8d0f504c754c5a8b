"""Backbone weights into a DeepLab: torchvision's ImageNet files (ResNet / VGG-16 / MobileNetV2), or
the backbone part of any checkpoint ``load_model`` reads (ours, a peer's, ``.tflite``, a shipped name)."""

from __future__ import annotations

import os
from typing import Any, TypeGuard, cast

import torch
from torch import nn

from deeplab.checkpoint import CheckpointError, key_problems, read_checkpoint
from deeplab.formats import read, recognise
from deeplab.models.deeplab import unwrap
from deeplab.models.named import weights_path

PREFIX = "backbone."


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Load ``model.backbone`` strictly from ``path`` and return a one-line report of what was loaded.

    A plain state dict without ``backbone.`` keys is an ImageNet classification file (its classifier,
    ``fc.*`` / ``classifier.*``, ignored); anything else is read as a segmentation checkpoint and its
    ``backbone.*`` tensors are taken, with its input normalisation (the features expect it)."""
    file = weights_path(path)
    if not file.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    backbone = unwrap(model).backbone
    obj = None if file.suffix in (".tflite", ".caffemodel") else read_checkpoint(file)
    if _is_imagenet(obj):
        ignore = cast(tuple[str, ...], backbone.pretrained_ignore)  # the ImageNet classifier's keys
        state = {k: v for k, v in obj.items() if not k.startswith(ignore)}
        source = "an ImageNet state dict"
    else:
        found = read(file) if obj is None else recognise(obj, file)
        state = {k[len(PREFIX) :]: v for k, v in found.state_dict.items() if k.startswith(PREFIX)}
        source = f"the backbone of a {found.arch} ({found.kind})"
        meta = getattr(unwrap(model), "meta", None)
        if meta is not None and "mean" in found.fields:
            meta.mean, meta.std = tuple(found.fields["mean"]), tuple(found.fields["std"])
    _load_strict(backbone, state, path)
    return f"{path}: {len(state)} backbone tensors from {source}; the head starts fresh"


def _is_imagenet(obj: Any) -> TypeGuard[dict[str, torch.Tensor]]:
    """True for a plain state dict of a classification network (tensors only, no ``backbone.`` keys)."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(v, torch.Tensor) for v in obj.values())
        and not any(str(k).startswith(PREFIX) for k in obj)
    )


def _load_strict(backbone: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """``backbone.load_state_dict(state)`` with one line naming the file where the keys or shapes differ."""
    own = backbone.state_dict()
    problems = key_problems(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        shape_mismatch=[k for k in state if k in own and state[k].shape != own[k].shape],
    )
    if problems:
        raise CheckpointError(f"{path}: not weights for a {type(backbone).__name__} backbone: {problems}")
    backbone.load_state_dict(state)
