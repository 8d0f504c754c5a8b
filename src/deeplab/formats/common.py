"""What every checkpoint layout shares: the ``Recognised`` result and key-renaming helpers."""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch

from deeplab.checkpoint import CheckpointError


class Recognised(NamedTuple):
    """What a checkpoint holds: its layout, the preset and config to build, weights, meta fields."""

    kind: str  # e.g. "deeplab checkpoint", "torchvision DeepLabV3 state dict"
    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    fields: dict[str, Any]  # classes, palette, mean, std where the file (or its layout) says them


def rename(state: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """Keys with their first matching prefix in ``names`` replaced (the others unchanged)."""
    renamed = {}
    for key, value in state.items():
        for old, new in names.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        renamed[key] = value
    return renamed


def resnet_depth(
    state: dict[str, torch.Tensor], path: str | os.PathLike, layout: str, prefix: str = "backbone."
) -> int:
    """50 or 101 from the number of layer3 units among the keys under ``prefix``."""
    units = {k[len(prefix) :].split(".")[1] for k in state if k.startswith(prefix + "layer3.")}
    depth = {6: 50, 23: 101}.get(len(units))
    if depth is None:
        raise CheckpointError(f"{path}: {layout} with {len(units)} layer3 units (not ResNet-50 or -101)")
    return depth


def resnet_config(num_classes: int, output_stride: int, rates: tuple[int, ...], **extra: Any) -> dict[str, Any]:
    """The build config of a ResNet DeepLab without multi-grid or aux head, plus ``extra``."""
    config = {"num_classes": num_classes, "output_stride": output_stride, "atrous_rates": rates}
    return config | {"multi_grid": None, "aux": False, "torchvision_dilation": False} | extra
