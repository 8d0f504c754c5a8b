"""Training configuration: documented dataclasses loaded from YAML, with `key=value` overrides.

Every key is checked: an unknown key is an error that names the closest valid one, and values are
checked against the field's type and allowed choices before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says where and why."""


@dataclass
class ModelConfig:
    """The network, built with `deeplab.build_model(arch, num_classes=<from the data set>, ...)`.

    Attributes:
        arch: preset name, e.g. "deeplabv2-resnet101", "deeplabv3-resnet101", "deeplabv3plus-mobilenetv2";
            null = the architecture of train.init_weights (fine-tuning a published model as it is built).
        output_stride: ratio of input to feature-map resolution (8, 16 or 32); null = preset default.
        multi_grid: unit rates of the last ResNet block, e.g. [1, 2, 4]; null = preset default.
        atrous_rates: ASPP rates, e.g. [6, 12, 18] at output stride 16; null = preset default.
        aux: add an auxiliary head on an intermediate feature map (its loss weight: train.aux_weight).
        train_scales: multi-scale (MSC) training of DeepLab v2: the loss is summed over every scale
            and the fused output; [] = single-scale training.
        fusion: how MSC fuses the scales: "max" (v2) or "mean".
        options: further keyword arguments of build_model (e.g. width_mult of the MobileNet presets).
    """

    arch: str | None = "deeplabv3-resnet101"
    output_stride: int | None = None
    multi_grid: list[int] | None = None
    atrous_rates: list[int] | None = None
    aux: bool = False
    train_scales: list[float] = field(default_factory=list)
    fusion: str = "max"
    options: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """The data sets, built with `deeplab.data.build_dataset(dataset, root, split, **options)`.

    Attributes:
        dataset: voc, voc_aug, cityscapes, ade20k, folder or shapes (built in, no download).
        root: directory holding the data set (null for shapes, which reads nothing).
        train_split: split to train on, e.g. "train_aug" (VOC + SBD) or "train".
        val_split: split validated on every train.val_every iterations; null = no validation.
        crop_size: side of the square random training crop (513 for VOC, 769 for Cityscapes).
        scale_range: random rescaling of training images, [min, max] factor.
        flip: random horizontal flips in training.
        num_workers: DataLoader worker processes per training process (0 = load in the main one).
        scan_masks: read every training mask before training starts, so that a bad label value
            stops the run at once with the file named (masks are also checked when read).
        options: further keyword arguments of build_dataset, for both splits.
        val_options: keyword arguments of build_dataset for the validation split only.
    """

    dataset: str = "voc_aug"
    root: str | None = "data/VOCdevkit"
    train_split: str = "train_aug"
    val_split: str | None = "val"
    crop_size: int = 513
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    flip: bool = True
    num_workers: int = 2
    scan_masks: bool = True
    options: dict = field(default_factory=dict)
    val_options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    """Optimisation and the training loop.

    Attributes:
        iterations: number of optimiser steps.
        batch_size: global batch: summed over processes and gradient-accumulation steps.
        accumulate: gradient-accumulation steps per optimiser step.
        lr: base learning rate of the poly schedule lr * (1 - it / iterations) ** lr_power.
        lr_power: power of the poly schedule (0.9 in the papers).
        head_lr_mult: learning-rate factor of the classifier head (10 in DeepLab v2, 1 in v3).
        momentum: SGD momentum.
        weight_decay: L2 weight decay of SGD.
        bn_mode: "train" (batch statistics updated, v3 stage 1) or "frozen" (batch norm in eval
            mode and its scale/shift not trained: v3 stage 2 and v2).
        sync_bn: synchronise batch statistics across GPUs (multi-GPU runs with bn_mode "train").
        aux_weight: weight of the auxiliary head's loss (model.aux).
        precision: "fp32", "bf16" (CPU or GPU) or "fp16" (GPU, with loss scaling).
        seed: seeds the data order, the augmentation of every sample and every iteration's RNG.
        backbone_weights: checkpoint to start the backbone from: torchvision's ImageNet file, or the
            backbone of any checkpoint load_model reads (a shipped name too, e.g. voc-mobilenetv2);
            null = random initialisation.
        init_weights: checkpoint to start the whole model from (weights only; any layout
            ``load_model`` reads, e.g. the stage-1 best.pt for v3 stage 2 or a peer's release; a
            different class count re-initialises the classifier); null = none.
        checkpoint_every: write OUTPUT/last.pt every this many iterations (and at the end).
        val_every: validate every this many iterations (and at the end); best.pt keeps the best mIoU.
        log_every: write a CSV row (mean loss since the last row) every this many iterations.
        tensorboard: also write TensorBoard events when the tensorboard package is installed.
    """

    iterations: int = 30000
    batch_size: int = 16
    accumulate: int = 1
    lr: float = 0.007
    lr_power: float = 0.9
    head_lr_mult: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    bn_mode: str = "train"
    sync_bn: bool = True
    aux_weight: float = 0.4
    precision: str = "fp32"
    seed: int = 0
    backbone_weights: str | None = None
    init_weights: str | None = None
    checkpoint_every: int = 1000
    val_every: int = 1000
    log_every: int = 20
    tensorboard: bool = True


@dataclass
class LossConfig:
    """The loss: cross entropy over the labelled pixels, optionally weighted and mined.

    Attributes:
        class_weights: null (every class 1), "auto" (median-frequency balancing, computed once from
            the training masks and written to OUTPUT/class_weights.json), or one weight per class.
        top_k_percent_pixels: the share of pixels with the largest loss that count (TensorFlow
            DeepLab's hard-pixel mining); 1.0 = every pixel.
        hard_example_mining_step: iterations over which that share goes linearly from 1.0 down to
            top_k_percent_pixels; 0 = from the first iteration.
    """

    class_weights: str | list[float] | None = None
    top_k_percent_pixels: float = 1.0
    hard_example_mining_step: int = 0


@dataclass
class Config:
    """A whole training run.

    Attributes:
        output: directory for checkpoints (last.pt, best.pt), log.csv and plots.
        model: see ModelConfig.
        data: see DataConfig.
        train: see TrainConfig.
        loss: see LossConfig.
    """

    output: str = "runs/deeplab"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)


_CHOICES = {
    "model.fusion": ("max", "mean"),
    "train.bn_mode": ("train", "frozen"),
    "train.precision": ("fp32", "bf16", "fp16"),
}
_POSITIVE = (
    "data.crop_size",
    "train.iterations",
    "train.batch_size",
    "train.accumulate",
    "train.lr",
    "train.checkpoint_every",
    "train.val_every",
    "train.log_every",
)

_FREE_SECTIONS = ("model.options.", "data.options.", "data.val_options.")  # any key allowed


def valid_keys(cls: type = Config, prefix: str = "") -> list[str]:
    """All dotted keys of a config dataclass, e.g. ["output", "model.arch", ...]."""
    keys = []
    for f in dataclasses.fields(cls):
        sub = _dataclass_type(cls, f.name)
        keys += valid_keys(sub, prefix + f.name + ".") if sub else [prefix + f.name]
    return keys


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (None = all defaults), apply `key=value` overrides and validate."""
    raw: dict = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw, source)


def config_from_dict(raw: dict, source: str = "config") -> Config:
    """Build and validate a Config from nested dicts (as read from YAML)."""
    cfg = _build(Config, raw, "", source)
    _check_values(cfg, source)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """The config as nested plain dicts (YAML/checkpoint friendly)."""
    return dataclasses.asdict(cfg)


def _apply_override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value, e.g. train.iterations=100")
    key = key.strip()
    if key not in valid_keys() and not key.startswith(_FREE_SECTIONS):
        raise _unknown_key(f"override {item!r}", key)
    parts = key.split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: value is not valid YAML") from None


def _dataclass_type(cls: type, name: str) -> type | None:
    hint = typing.get_type_hints(cls)[name]
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _unknown_key(source: str, key: str) -> ConfigError:
    leaves = {k.rsplit(".", 1)[-1]: k for k in valid_keys()}
    leaf = key.rsplit(".", 1)[-1]
    close = [leaves[leaf]] if leaf in leaves else []  # a known name in the wrong section
    close = close or difflib.get_close_matches(key, valid_keys(), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{source}: unknown config key {key!r}{hint}")


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')!r} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise _unknown_key(source, prefix + str(key))
        if dataclasses.is_dataclass(hints[key]):
            kwargs[key] = _build(hints[key], value, prefix + key + ".", source)
        else:
            kwargs[key] = _coerce(value, hints[key], prefix + key, source)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, source: str) -> Any:
    """Check `value` against a type hint (int, float, bool, str, list[T], dict, T | None)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for kind in inner[:-1]:  # the first type the value fits (e.g. "auto" or a list of weights)
            try:
                return _coerce(value, kind, key, source)
            except ConfigError:
                continue
        return _coerce(value, inner[-1], key, source)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return [_coerce(v, args[0], key, source) for v in value]
    if hint is float and isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        dict: isinstance(value, dict),
    }[hint]
    if not ok:
        raise ConfigError(f"{source}: {key} must be {hint.__name__}, got {value!r}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
    return float(value) if hint is float else value


def _check_values(cfg: Config, source: str) -> None:
    def get(key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(cfg, section), name)

    for key, choices in _CHOICES.items():
        if get(key) not in choices:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(choices)}, got {get(key)!r}")
    for key in _POSITIVE:
        if get(key) <= 0:
            raise ConfigError(f"{source}: {key} must be > 0, got {get(key)!r}")
    if len(cfg.data.scale_range) != 2 or not 0 < cfg.data.scale_range[0] <= cfg.data.scale_range[1]:
        raise ConfigError(f"{source}: data.scale_range must be [min, max] with 0 < min <= max")
    if cfg.train.batch_size % cfg.train.accumulate:
        raise ConfigError(f"{source}: train.batch_size must be a multiple of train.accumulate")
    weights = cfg.loss.class_weights
    if isinstance(weights, str) and weights != "auto":
        raise ConfigError(f"{source}: loss.class_weights must be auto, a list of weights or null, got {weights!r}")
    if isinstance(weights, list) and (not weights or min(weights) < 0):
        raise ConfigError(f"{source}: loss.class_weights must be non-negative numbers, got {weights!r}")
    if not 0 < cfg.loss.top_k_percent_pixels <= 1:
        raise ConfigError(
            f"{source}: loss.top_k_percent_pixels must lie in (0, 1], got {cfg.loss.top_k_percent_pixels!r}"
        )
    if cfg.loss.hard_example_mining_step < 0:
        raise ConfigError(f"{source}: loss.hard_example_mining_step must be >= 0")
    if cfg.model.aux and cfg.model.train_scales:
        raise ConfigError(f"{source}: model.aux cannot be combined with model.train_scales (MSC)")
