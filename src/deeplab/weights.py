"""Checkpoint I/O: the project's own format, torchvision DeepLabV3 state dicts, ImageNet backbones.

The project's checkpoint is a plain dict saved with ``torch.save``: ``format="deeplab"``,
``version=1``, ``arch`` (preset name), ``config`` (the full build kwargs, num_classes included),
``state_dict``, ``classes``, ``palette``, ``mean``, ``std``, plus any extra keys (the trainer adds
``train_state``). Files are always read with ``weights_only=True``: loading never runs code.
torchvision's ``deeplabv3_resnet50/101`` state dicts load without renaming (output stride 8, rates
12/24/36, no multi-grid, torchvision's dilation of the first unit, optional ``aux_classifier``).
"""

from __future__ import annotations

import os
import pickle
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplab.palette import default_classes, voc_palette

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMAT, VERSION = "deeplab", 1


class CheckpointError(ValueError):
    """A file that cannot be read as a checkpoint; the message names the file."""


@dataclass
class ModelMeta:
    """What a model needs besides its weights: arch (preset), config, class names, palette, normalisation."""

    arch: str
    config: dict[str, Any]
    classes: list[str]
    palette: list[tuple[int, int, int]]
    mean: tuple[float, float, float] = field(default=IMAGENET_MEAN)
    std: tuple[float, float, float] = field(default=IMAGENET_STD)


def default_meta(arch: str, config: dict[str, Any]) -> ModelMeta:
    """Meta with VOC names (21 classes) or ``class_i``, the VOC palette and ImageNet mean/std."""
    n = config["num_classes"]
    return ModelMeta(arch, dict(config), default_classes(n), voc_palette(n))


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` on CPU, with one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower():
            raise CheckpointError(f"{path}: refusing to load, the file holds Python objects beyond "
                                  f"tensors and plain containers (read with weights_only=True)") from None  # fmt: skip
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_first_line(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the reader means an unreadable file
        raise CheckpointError(f"{path}: cannot read checkpoint, truncated or not a PyTorch file "
                              f"({_first_line(exc)})") from None  # fmt: skip


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def unwrap(model: nn.Module) -> nn.Module:
    """The DeepLab inside DDP / MultiScale wrappers."""
    while hasattr(model, "module") or hasattr(model, "model"):
        model = getattr(model, "module", None) or model.model
    return model


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> None:
    """Save ``model`` (DeepLab, or wrapped in DDP/MultiScale) and its meta atomically, plus ``extra`` keys."""
    model = unwrap(model)
    meta: ModelMeta = model.meta
    checkpoint = {
        "format": FORMAT, "version": VERSION, "arch": meta.arch, "config": dict(meta.config),
        "state_dict": model.state_dict(), "classes": list(meta.classes),
        "palette": [tuple(int(v) for v in c) for c in meta.palette],
        "mean": tuple(float(v) for v in meta.mean), "std": tuple(float(v) for v in meta.std), **extra,
    }  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def interpret_checkpoint(obj: Any, path: str | os.PathLike) -> tuple[str, dict, dict[str, torch.Tensor], dict]:
    """(arch, config, state_dict, meta fields) of a loaded checkpoint; CheckpointError for unknown formats."""
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        missing = [k for k in ("arch", "config", "state_dict") if k not in obj]
        if missing:
            raise CheckpointError(f"{path}: deeplab checkpoint without {', '.join(missing)}")
        fields = {k: obj[k] for k in ("classes", "palette", "mean", "std") if k in obj}
        return obj["arch"], dict(obj["config"]), obj["state_dict"], fields
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a checkpoint, it holds a {type(obj).__name__}")
    if "classifier.0.convs.0.0.weight" in obj and "backbone.layer4.0.conv1.weight" in obj:
        return (*torchvision_config(obj, path), obj, {})
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
        "num_classes": int(state["classifier.4.weight"].shape[0]), "output_stride": 8,
        "atrous_rates": (12, 24, 36), "multi_grid": None,
        "aux": any(k.startswith("aux_classifier.") for k in state), "torchvision_dilation": True,
    }  # fmt: skip
    return f"deeplabv3-resnet{depth}", config


def load_model(path: str | os.PathLike, **overrides: Any) -> nn.Module:
    """Build the model a checkpoint describes, load its weights, return it in eval mode with meta filled.

    ``overrides`` are build_model's; a changed ``num_classes`` re-initialises the classifier layers
    (with a warning), a changed ``output_stride`` without ``atrous_rates`` scales the rates."""
    from deeplab.presets import build_model

    arch, config, state, fields = interpret_checkpoint(read_checkpoint(path), path)
    config = _apply_overrides(config, overrides)
    build_kwargs = {k: v for k, v in config.items() if k != "num_classes"}
    model = build_model(arch, config["num_classes"], **build_kwargs)
    load_state(model, state, path)
    if config["num_classes"] == len(fields.get("classes", [])):
        model.meta.classes = list(fields["classes"])
        model.meta.palette = [tuple(c) for c in fields.get("palette", model.meta.palette)]
    model.meta.mean = tuple(fields.get("mean", model.meta.mean))
    model.meta.std = tuple(fields.get("std", model.meta.std))
    return model.eval()


def _apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge ``overrides``; a new output_stride without new rates scales the stored rates."""
    merged = {**config, **overrides}
    old_os, new_os = config.get("output_stride"), overrides.get("output_stride")
    if new_os in (8, 16, 32) and new_os != old_os and "atrous_rates" not in overrides and config.get("atrous_rates"):
        merged["atrous_rates"] = tuple(max(1, round(r * old_os / new_os)) for r in config["atrous_rates"])
    return merged


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load ``state`` into ``model``: classifier layers whose class count differs, and an aux head the
    file lacks, are left freshly initialised with a warning; any other mismatch is a CheckpointError."""
    own = model.state_dict()
    num_classes = model.meta.config["num_classes"]
    differ = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    reinit = sorted({_layer(k) for k in differ if own[k].shape[:1] == (num_classes,)})
    wrong = [k for k in differ if _layer(k) not in reinit]
    dropped_aux = model.aux_classifier is None
    unexpected = [k for k in state if k not in own and not (dropped_aux and k.startswith("aux_classifier."))]
    fresh_aux = [k for k in own if k not in state and k.startswith("aux_classifier.")]
    missing = [k for k in own if k not in state and k not in fresh_aux]
    problems = _key_problems(missing=missing, unexpected=unexpected, shape_mismatch=wrong)
    if problems:
        raise CheckpointError(f"{path}: weights do not fit {model.meta.arch}: {problems}")
    if reinit:
        warnings.warn(f"{path}: num_classes is {num_classes}, re-initialised classifier layers {', '.join(reinit)}",
                      stacklevel=3)  # fmt: skip
    if fresh_aux:
        warnings.warn(f"{path}: no aux_classifier weights in the file, the aux head is freshly initialised", stacklevel=3)
    model.load_state_dict({k: v for k, v in state.items() if k in own and _layer(k) not in reinit}, strict=False)


def _layer(key: str) -> str:
    """The module name of a state-dict key ("classifier.4.weight" -> "classifier.4")."""
    return key.rsplit(".", 1)[0]


def _key_problems(**keys: list[str]) -> str:
    """'missing: a, b, c; unexpected: d' for the non-empty key lists (first three of each)."""
    return "; ".join(f"{name.replace('_', ' ')}: {', '.join(found[:3])}" for name, found in keys.items() if found)


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision ImageNet ResNet / VGG-16 / MobileNetV2 state dict file into ``model.backbone``:
    strict on the backbone's keys, ignoring the ImageNet classifier (``fc.*``, ``classifier.*``)."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a backbone state dict (expected a dict of tensors)")
    backbone = unwrap(model).backbone
    state = {k: v for k, v in state.items() if not k.startswith(backbone.pretrained_ignore)}
    own = backbone.state_dict()
    problems = _key_problems(
        missing=[k for k in own if k not in state],
        unexpected=[k for k in state if k not in own],
        shape_mismatch=[k for k in state if k in own and state[k].shape != own[k].shape],
    )
    if problems:
        raise CheckpointError(f"{path}: not weights for a {type(backbone).__name__} backbone: {problems}")
    backbone.load_state_dict(state)


def describe_checkpoint(path: str | os.PathLike) -> str:
    """A human-readable summary of what a checkpoint file holds."""
    obj = read_checkpoint(path)
    arch, config, state, fields = interpret_checkpoint(obj, path)
    own_format = obj.get("format") == FORMAT
    kind = "deeplab checkpoint" if own_format else "torchvision DeepLabV3 state dict"
    params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)
    meta = asdict(default_meta(arch, config)) | fields
    lines = [f"file:     {path}", f"format:   {kind}", f"arch:     {arch}",
             f"config:   {', '.join(f'{k}={v}' for k, v in config.items())}",
             f"weights:  {len(state)} tensors, {params / 1e6:.2f}M parameters",
             f"classes:  {len(meta['classes'])}: {', '.join(meta['classes'][:25])}"
             + (" ..." if len(meta["classes"]) > 25 else ""),
             f"mean/std: {tuple(meta['mean'])} / {tuple(meta['std'])}"]  # fmt: skip
    known = {"format", "version", "arch", "config", "state_dict", *fields}
    extra = [k for k in obj if k not in known] if own_format else []
    if extra:
        lines.append(f"extra:    {', '.join(extra)}")
    return "\n".join(lines)
