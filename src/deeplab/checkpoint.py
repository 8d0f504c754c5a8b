"""Checkpoint files: read (never running code), write (atomically, only finite weights), recognise.

Our checkpoint is a plain dict saved with ``torch.save``: ``format="deeplab"``, ``version=1``,
``arch`` (preset name), ``config`` (the full build kwargs, num_classes included), ``state_dict``,
``classes``, ``palette``, ``mean``, ``std``, plus any extra keys (the trainer adds ``train_state``
or ``run``). Files are always read with ``weights_only=True``. Besides our own format this module
recognises torchvision's ``deeplabv3_resnet50/101`` state dicts (keys as they are; output stride 8,
rates 12/24/36, no multi-grid, torchvision's dilation of the first unit, optional aux head).

A checkpoint can also be a ``.safetensors`` file: the state dict as tensors and everything else
(format, arch, config, classes, palette, mean, std) as JSON in the header metadata, so loading it
involves no pickle at all. ``read_checkpoint`` returns the same dict for both.

This module knows files and dicts, not networks: ``deeplab.models`` builds models from what it reads.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from deeplab.atomic import atomic_write

FORMAT, VERSION = "deeplab", 1


class CheckpointError(ValueError):
    """A file that cannot be read or written as a checkpoint; the message names the file."""


class Recognised(NamedTuple):
    """What a checkpoint holds: its format, the preset and config to build, weights, meta fields."""

    kind: str  # "deeplab checkpoint" or "torchvision DeepLabV3 state dict"
    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    fields: dict[str, Any]  # classes, palette, mean, std where the file has them


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU (or a .safetensors file), one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refusing to load, the file holds Python objects beyond "
                f"tensors and plain containers (read with weights_only=True)"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: cannot read checkpoint, truncated or not a PyTorch file ({_first_line(exc)})"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _read_safetensors(path: Path) -> dict[str, Any]:
    """Our checkpoint dict from a .safetensors file (a plain state dict when it has no metadata)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    if "deeplab" not in metadata:
        return state
    try:
        meta = json.loads(metadata["deeplab"])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: the 'deeplab' metadata is not JSON") from None
    return {**meta, "state_dict": state}


def non_finite_keys(state_dict: dict[str, Any]) -> list[str]:
    """Keys of floating-point tensors holding NaN or infinity."""
    return [
        k
        for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]


def write_checkpoint(path: str | os.PathLike, checkpoint: dict[str, Any]) -> Path:
    """Save a checkpoint dict atomically; refuse (CheckpointError) when its weights are not finite,
    so a good earlier file is never replaced by a broken one."""
    bad = non_finite_keys(checkpoint.get("state_dict", {}))
    if bad:
        raise CheckpointError(f"{path}: not written, {len(bad)} weight tensors hold NaN or infinity (first: {bad[0]})")
    if Path(path).suffix == ".safetensors":
        return _write_safetensors(Path(path), checkpoint)
    return atomic_write(path, lambda f: torch.save(checkpoint, f))


def _write_safetensors(path: Path, checkpoint: dict[str, Any]) -> Path:
    """The state dict as tensors, the other JSON-able keys as header metadata (no pickle)."""
    state = {k: v.detach().contiguous().cpu() for k, v in checkpoint["state_dict"].items()}
    meta = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "train_state", "optimizer")}
    try:
        text = json.dumps(meta)
    except TypeError as exc:
        raise CheckpointError(f"{path}: cannot store {exc} in safetensors metadata") from None
    data = save(state, metadata={"deeplab": text})
    return atomic_write(path, lambda f: f.write(data))


def recognise(obj: Any, path: str | os.PathLike) -> Recognised:
    """Identify a loaded checkpoint; CheckpointError (one line naming the file) for unknown ones."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        missing = [k for k in ("arch", "config", "state_dict") if k not in obj]
        if missing:
            raise CheckpointError(f"{path}: deeplab checkpoint without {', '.join(missing)}")
        fields = {k: obj[k] for k in ("classes", "palette", "mean", "std") if k in obj}
        return Recognised("deeplab checkpoint", obj["arch"], dict(obj["config"]), obj["state_dict"], fields)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint, it holds a {type(obj).__name__}")
    if isinstance(obj.get("model_state"), dict):  # VainF/DeepLabV3Plus-Pytorch's training checkpoint
        return _vainf(obj["model_state"], path)
    if "classifier.0.convs.0.0.weight" in obj and "backbone.layer4.0.conv1.weight" in obj:
        arch, config = torchvision_config(obj, path)
        return Recognised("torchvision DeepLabV3 state dict", arch, config, obj, {})
    keys = ", ".join(map(str, list(obj)[:5])) or "none"
    backbone_like = "conv1.weight" in obj or "features.0.0.weight" in obj or "features.0.weight" in obj
    hint = "; it looks like ImageNet backbone weights (use pretrained_backbone=)" if backbone_like else ""
    raise CheckpointError(f"{path}: unknown checkpoint format, first keys: {keys}{hint}")


def torchvision_config(state: dict[str, torch.Tensor], path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Preset name and config that reproduce torchvision's ``deeplabv3_resnet50/101``."""
    units = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    depth = {6: 50, 23: 101}.get(len(units))
    if depth is None or "classifier.4.weight" not in state:
        raise CheckpointError(f"{path}: torchvision DeepLabV3 state dict with {len(units)} layer3 units (not 6 or 23)")
    config = {
        "num_classes": int(state["classifier.4.weight"].shape[0]),
        "output_stride": 8,
        "atrous_rates": (12, 24, 36),
        "multi_grid": None,
        "aux": any(k.startswith("aux_classifier.") for k in state),
        "torchvision_dilation": True,
    }
    return f"deeplabv3-resnet{depth}", config


def _resnet_depth(state: dict[str, torch.Tensor], path: str | os.PathLike, layout: str) -> int:
    """50 or 101 from the number of layer3 units of a ResNet backbone's keys."""
    units = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    depth = {6: 50, 23: 101}.get(len(units))
    if depth is None:
        raise CheckpointError(f"{path}: {layout} with {len(units)} layer3 units (not ResNet-50 or -101)")
    return depth


def _vainf(state: dict[str, torch.Tensor], path: str | os.PathLike) -> Recognised:
    """VainF/DeepLabV3Plus-Pytorch: torchvision ResNet backbones (its dilation), ASPP at 6/12/18
    (output stride 16, its default; pass output_stride=8 to load_model for models trained at 8);
    v3+ with one 3x3 fuse conv and [low-level, ASPP] concatenation."""
    if any(k.startswith("backbone.high_level_features.") for k in state):
        raise CheckpointError(f"{path}: a VainF MobileNetV2 checkpoint; only its ResNet models load so far")
    if "classifier.classifier.0.convs.0.0.weight" in state:  # deeplabv3: classifier.classifier = DeepLabHead
        depth = _resnet_depth(state, path, "VainF DeepLabV3")
        renamed = {_strip(k, "classifier.classifier.", "classifier."): v for k, v in state.items()}
        classes = int(state["classifier.classifier.4.weight"].shape[0])
        arch, extra = f"deeplabv3-resnet{depth}", {}
    elif "classifier.aspp.convs.0.0.weight" in state and "classifier.project.0.weight" in state:
        depth = _resnet_depth(state, path, "VainF DeepLabV3+")
        names = {"classifier.project.": "classifier.reduce.", "classifier.classifier.3.": "classifier.cls."}
        names["classifier.classifier."] = "classifier.fuse."
        renamed = {}
        for key, value in state.items():
            for old, new in names.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
                    break
            renamed[key] = value
        classes = int(state["classifier.classifier.3.weight"].shape[0])
        arch, extra = f"deeplabv3plus-resnet{depth}", {"fuse_convs": 1, "low_level_first": True}
    else:
        keys = ", ".join(list(state)[:5])
        raise CheckpointError(f"{path}: a VainF checkpoint ('model_state') of an unknown model, first keys: {keys}")
    config = {
        "num_classes": classes,
        "output_stride": 16,
        "atrous_rates": (6, 12, 18),
        "multi_grid": None,
        "aux": False,
        "torchvision_dilation": True,
        **extra,
    }
    return Recognised("VainF/DeepLabV3Plus-Pytorch checkpoint", arch, config, renamed, {})


def _strip(key: str, old: str, new: str) -> str:
    return new + key[len(old) :] if key.startswith(old) else key


def key_problems(**keys: list[str]) -> str:
    """'missing: a, b, c; unexpected: d' for the non-empty key lists (first three of each)."""
    return "; ".join(f"{name.replace('_', ' ')}: {', '.join(found[:3])}" for name, found in keys.items() if found)
