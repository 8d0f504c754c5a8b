"""Recognise a checkpoint's layout: ours, or a peer's (torchvision, VainF,
segmentation_models_pytorch, kazuto1011/deeplab-pytorch, mmsegmentation).

``recognise(obj, path)`` takes what ``checkpoint.read_checkpoint`` returned and gives a ``Recognised``:
the layout's name, our preset and build config that reproduce the peer's network, the state dict
renamed to our keys, and meta fields (classes, palette, mean, std) where known. Each peer's
layout lives in its own module with ``SIGNATURE`` keys, ``matches(obj)`` and ``recognise(obj, path)``.
A file that matches none gets one line naming the closest layout and the keys it lacks. ``read(path)``
also reads the authors' Caffe releases (``.caffemodel``, see ``caffe.py``) and TensorFlow's DeepLab
model zoo as TensorFlow Lite files (``.tflite``, see ``tflite.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from deeplab.checkpoint import FORMAT, CheckpointError, read_checkpoint
from deeplab.formats import caffe, kazuto, mmseg, smp, tflite, torchvision, vainf
from deeplab.formats.common import Recognised

__all__ = ["Recognised", "read", "recognise", "LAYOUTS"]

LAYOUTS: dict[str, ModuleType] = {  # tried in this order
    "VainF/DeepLabV3Plus-Pytorch": vainf,
    "segmentation_models_pytorch": smp,
    "torchvision DeepLabV3": torchvision,
    "kazuto1011/deeplab-pytorch": kazuto,
    "mmsegmentation": mmseg,
}


def read(path: str | os.PathLike) -> Recognised:
    """Read a checkpoint file (any layout above, .safetensors, a Caffe .caffemodel or a .tflite) and recognise it."""
    suffix = Path(path).suffix
    if suffix in (".caffemodel", ".tflite") and not Path(path).is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if suffix == ".caffemodel":
        return caffe.recognise(caffe.read_caffemodel(path), path)
    if suffix == ".tflite":
        return tflite.recognise(path)
    return recognise(read_checkpoint(path), path)


def recognise(obj: Any, path: str | os.PathLike) -> Recognised:
    """Identify a loaded checkpoint; CheckpointError (one line naming the file) for unknown ones."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint, it holds a {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        return _ours(obj, path)
    for layout in LAYOUTS.values():
        if layout.matches(obj):
            return layout.recognise(obj, path)
    raise CheckpointError(f"{path}: unknown checkpoint format, {_closest(obj)}")


def _ours(obj: dict, path: str | os.PathLike) -> Recognised:
    missing = [k for k in ("arch", "config", "state_dict") if k not in obj]
    if missing:
        raise CheckpointError(f"{path}: deeplab checkpoint without {', '.join(missing)}")
    config, classes = obj["config"], obj["config"].get("num_classes") if isinstance(obj["config"], dict) else None
    if not isinstance(obj["arch"], str) or not isinstance(config, dict):
        raise CheckpointError(f"{path}: deeplab checkpoint whose arch or config is not a name and a mapping")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise CheckpointError(f"{path}: deeplab checkpoint whose num_classes is {classes!r}, not a positive integer")
    fields = {k: obj[k] for k in ("classes", "palette", "mean", "std", "int8") if k in obj}
    return Recognised("deeplab checkpoint", obj["arch"], dict(obj["config"]), obj["state_dict"], fields)


def _closest(obj: dict) -> str:
    """'first keys: ...; closest layout: NAME (lacks KEY)' for a dict no layout matched."""
    keys = ", ".join(map(str, list(obj)[:5])) or "none"
    if "conv1.weight" in obj or "features.0.0.weight" in obj or "features.0.weight" in obj:
        return f"first keys: {keys}; it looks like ImageNet backbone weights (use pretrained_backbone=)"
    scores = {name: sum(k in obj for k in layout.SIGNATURE) for name, layout in LAYOUTS.items()}
    name = max(scores, key=lambda n: scores[n])
    if not scores[name]:
        return f"first keys: {keys}; no known layout shares its keys"
    lacks = ", ".join(k for k in LAYOUTS[name].SIGNATURE if k not in obj)
    return f"first keys: {keys}; closest layout: {name} (lacks {lacks})"
