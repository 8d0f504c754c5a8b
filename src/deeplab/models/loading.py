"""A model from a checkpoint file and back: ``load_model``, ``save_model``, ``describe_checkpoint``."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deeplab.checkpoint import (
    FORMAT,
    VERSION,
    CheckpointError,
    key_problems,
    non_finite_keys,
    read_checkpoint,
    write_checkpoint,
)
from deeplab.formats import read
from deeplab.models.deeplab import DeepLab, unwrap
from deeplab.models.meta import ModelMeta, default_meta
from deeplab.models.named import NAMED_WEIGHTS, weights_path
from deeplab.models.presets import build_model, scale_rates


def load_model(path: str | os.PathLike, **overrides: Any) -> DeepLab:
    """Build the model a checkpoint describes and load its weights.

    Args:
        path: a checkpoint of any layout ``deeplab.formats`` recognises (ours ``.pt`` /
            ``.safetensors``, torchvision, VainF, smp, mmseg, kazuto1011, ``.caffemodel``).
        **overrides: build_model's options; a changed ``num_classes`` re-initialises the classifier
            layers (with a warning), a changed ``output_stride`` without ``atrous_rates`` scales the rates.

    Returns:
        The model in eval mode, ``model.meta`` filled (classes, palette, mean/std from the file where it says).

    Raises:
        CheckpointError: one line naming the file, for unreadable, unknown or mismatched checkpoints.
    """
    path = _existing(path)
    found = read(path)
    config = _apply_overrides(found.config, overrides)
    build_kwargs = {k: v for k, v in config.items() if k != "num_classes"}
    model = build_model(found.arch, config["num_classes"], **build_kwargs)
    load_state(model, found.state_dict, path)
    fields = found.fields
    if config["num_classes"] == len(fields.get("classes", [])):
        model.meta.classes = list(fields["classes"])
        model.meta.palette = [tuple(c) for c in fields.get("palette", model.meta.palette)]
    model.meta.mean = tuple(fields.get("mean", model.meta.mean))
    model.meta.std = tuple(fields.get("std", model.meta.std))
    if "int8" in fields and not overrides:  # the quantised graph holds these weights, as built
        model.meta.int8 = fields["int8"]
    return model.eval()


def _existing(path: str | os.PathLike) -> Path:
    """The checkpoint file a path or shipped name means; one line listing the names where it is neither."""
    found = weights_path(path)
    if not found.exists():
        raise CheckpointError(f"{path}: no such checkpoint file, nor shipped weights ({', '.join(NAMED_WEIGHTS)})")
    return found


def load_weights(model: nn.Module, path: str | os.PathLike) -> str:
    """Start ``model`` from the weights of any checkpoint ``load_model`` reads (ours, a peer's, a
    Caffe release, a shipped name): strict on every key, except classifier layers whose class count
    differs, which stay freshly initialised (with a warning), as ``load_state`` does. Returns a
    one-line report of what was loaded and what was not."""
    found = read(_existing(path))
    fresh = load_state(unwrap(model), found.state_dict, path)
    loaded = len(found.state_dict) - sum(1 for k in found.state_dict if _layer(k) in fresh)
    rest = f"; freshly initialised: {', '.join(fresh)}" if fresh else "; nothing left fresh"
    return f"{path}: {loaded} tensors from a {found.arch} ({found.kind}){rest}"


def _apply_overrides(config: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge ``overrides``; a new output_stride without new rates scales the stored rates."""
    merged = {**config, **overrides}
    old_os, new_os = config.get("output_stride"), overrides.get("output_stride")
    if (
        old_os
        and new_os in (8, 16, 32)
        and new_os != old_os
        and "atrous_rates" not in overrides
        and config.get("atrous_rates")
    ):
        merged["atrous_rates"] = scale_rates(config["atrous_rates"], old_os, new_os)
    return merged


def load_state(model: DeepLab, state: dict[str, torch.Tensor], path: str | os.PathLike) -> list[str]:
    """Load ``state`` into ``model``: classifier layers whose class count differs, and an aux head the
    file lacks, are left freshly initialised with a warning (their names are returned); any other
    mismatch is a CheckpointError."""
    own = model.state_dict()
    _check_values(state, own, path)
    num_classes = model.meta.config["num_classes"]
    differ = [k for k, v in state.items() if k in own and v.shape != own[k].shape]
    reinit = sorted({_layer(k) for k in differ if own[k].shape[:1] == (num_classes,)})
    wrong = [k for k in differ if _layer(k) not in reinit]
    dropped_aux = model.aux_classifier is None
    unexpected = [k for k in state if k not in own and not (dropped_aux and k.startswith("aux_classifier."))]
    fresh_aux = [k for k in own if k not in state and k.startswith("aux_classifier.")]
    missing = [k for k in own if k not in state and k not in fresh_aux]
    shapes = [f"{k} (file {tuple(state[k].shape)}, model {tuple(own[k].shape)})" for k in wrong]
    problems = key_problems(missing=missing, unexpected=unexpected, shape_mismatch=shapes)
    if problems:
        raise CheckpointError(f"{path}: weights do not fit {model.meta.arch}: {problems}")
    if reinit:
        warnings.warn(
            f"{path}: num_classes is {num_classes}, re-initialised classifier layers {', '.join(reinit)}", stacklevel=3
        )
    if fresh_aux:
        warnings.warn(
            f"{path}: no aux_classifier weights in the file, the aux head is freshly initialised", stacklevel=3
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own and _layer(k) not in reinit}, strict=False)
    return reinit + (["aux_classifier"] if fresh_aux else [])


def _check_values(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """CheckpointError naming the file and the first tensor where the weights are not finite, or where
    the file stores integers for a floating-point weight (the same bytes read as another type)."""
    bad = non_finite_keys(state)
    if bad:
        raise CheckpointError(f"{path}: weights hold NaN or infinity, first in {bad[0]} ({len(bad)} tensors)")
    for key, value in state.items():
        if key in own and own[key].is_floating_point() and not value.is_floating_point():
            raise CheckpointError(f"{path}: tensor {key} is stored as {value.dtype}, the model's is floating point")


def _layer(key: str) -> str:
    """The module name of a state-dict key ("classifier.4.weight" -> "classifier.4")."""
    return key.rsplit(".", 1)[0]


def save_model(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Save ``model`` (a DeepLab, or wrapped in DDP/MultiScale) and its meta atomically, plus ``extra``
    keys; refuses weights that are not finite (CheckpointError), leaving an earlier file intact."""
    model = unwrap(model)
    meta: ModelMeta = model.meta
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        "arch": meta.arch,
        "config": dict(meta.config),
        "state_dict": model.state_dict(),
        "classes": list(meta.classes),
        "palette": [tuple(int(v) for v in c) for c in meta.palette],
        "mean": tuple(float(v) for v in meta.mean),
        "std": tuple(float(v) for v in meta.std),
        **({"int8": meta.int8} if meta.int8 else {}),
        **extra,
    }
    return write_checkpoint(path, checkpoint)


def describe_checkpoint(path: str | os.PathLike) -> str:
    """A human-readable summary of what a checkpoint file (or shipped weights' name) holds."""
    named = NAMED_WEIGHTS.get(str(path)) if not Path(path).exists() else None
    path = _existing(path)
    found = read(path)
    state = found.state_dict
    params = sum(v.numel() for k, v in state.items() if v.is_floating_point() and "running_" not in k)
    meta = asdict(default_meta(found.arch, found.config)) | found.fields
    classes = meta["classes"]
    lines = [
        f"file:     {path}",
        f"format:   {found.kind}" + (" (safetensors)" if Path(path).suffix == ".safetensors" else ""),
        f"arch:     {found.arch}",
        f"config:   {', '.join(f'{k}={v}' for k, v in found.config.items())}",
        f"weights:  {len(state)} tensors, {params / 1e6:.2f}M parameters",
        f"classes:  {len(classes)}: {', '.join(classes[:25])}" + (" ..." if len(classes) > 25 else ""),
        f"mean/std: {tuple(meta['mean'])} / {tuple(meta['std'])}",
    ]
    if meta.get("int8"):
        lines.append(f"int8:     calibrated on {meta['int8']['images']} images ({meta['int8']['tools']})")
    known = {"format", "version", "arch", "config", "state_dict", *found.fields}
    extra = []
    if found.kind == "deeplab checkpoint":
        extra = [k for k in read_checkpoint(path) if k not in known]
    if extra:
        lines.append(f"extra:    {', '.join(extra)}")
    if named is not None:
        lines += [f"shipped:  {named.description}", f"source:   {named.source}", f"licence:  {named.licence}"]
        lines.append(f"figure:   {named.published}")
    return "\n".join(lines)
