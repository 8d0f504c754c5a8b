"""The authors' Caffe releases of DeepLab v1/v2 (``.caffemodel``), read with the protobuf package.

Only the part of Caffe's ``caffe.proto`` schema that holds weights is declared here (same field
numbers): ``NetParameter.layer`` (and the older ``layers``), each layer's ``name``, ``type`` and
``blobs`` (``BlobProto``: ``shape`` or the legacy num/channels/height/width, and ``data``); every
other field is skipped by the parser. Weights are mapped by the releases' layer names:

- ResNet-101 ASPP-L (v2): ``conv1``/``bn_conv1``/``scale_conv1``, ``res{2-5}{a,b,b1..}_branch{1,2a,2b,2c}``
  with ``bn*``/``scale*``, ``fc1_*_c{0-3}``; the MSC copies (names with ``res075``/``res05``) share
  the weights and are skipped. Caffe's BatchNorm stores sums and a scale factor; its Scale layer
  holds the affine weight and bias.
- VGG-16: ``conv{1-5}_{1-3}``, LargeFOV (v1) ``fc6``/``fc7``/``fc8_*``, ASPP (v2) ``fc6_{1-4}``...
Both take BGR on 0-255 minus the mean (104.008, 116.669, 122.675): conv1 is reordered to RGB and
the mean and std go into the metadata, as for kazuto1011's conversion of the same model.
"""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised, resnet_config
from deeplab.formats.kazuto import BGR_MEAN

VGG_CONVS = ("1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3")
VGG_INDEX = dict(zip(VGG_CONVS, (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)))
RESNET_STEM = {
    "conv1": ("res", "backbone.conv1"),
    "bn_conv1": ("bn", "backbone.bn1"),
    "scale_conv1": ("scale", "backbone.bn1"),
}
RESNET_UNIT = re.compile(r"(res|bn|scale)([2-5])([a-z])(\d*)_branch(1|2a|2b|2c)")
BRANCH = {"1": ("downsample.0", "downsample.1"), "2a": ("conv1", "bn1"), "2b": ("conv2", "bn2"), "2c": ("conv3", "bn3")}


@cache
def net_parameter() -> type:
    """The NetParameter message class of the weight-holding subset of caffe.proto."""
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise CheckpointError("reading .caffemodel files needs the protobuf package: pip install protobuf") from None
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="deeplab_caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name: str, *fields: tuple) -> None:
        m = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            f = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                f.type_name = type_name
            if kind in (F.TYPE_FLOAT, F.TYPE_DOUBLE, F.TYPE_INT64) and label == F.LABEL_REPEATED:
                f.options.packed = True

    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    message("BlobShape", ("dim", 1, F.TYPE_INT64, rep, None))
    message(
        "BlobProto",
        ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape"),
        ("data", 5, F.TYPE_FLOAT, rep, None),
        ("double_data", 8, F.TYPE_DOUBLE, rep, None),
        ("num", 1, F.TYPE_INT32, opt, None),
        ("channels", 2, F.TYPE_INT32, opt, None),
        ("height", 3, F.TYPE_INT32, opt, None),
        ("width", 4, F.TYPE_INT32, opt, None),
    )
    blobs = F.TYPE_MESSAGE, rep, ".caffe.BlobProto"
    message(
        "LayerParameter",
        ("name", 1, F.TYPE_STRING, opt, None),
        ("type", 2, F.TYPE_STRING, opt, None),
        ("blobs", 7, *blobs),
    )
    message(
        "V1LayerParameter",
        ("name", 4, F.TYPE_STRING, opt, None),
        ("type", 5, F.TYPE_INT32, opt, None),
        ("blobs", 6, *blobs),
    )
    message(
        "NetParameter",
        ("name", 1, F.TYPE_STRING, opt, None),
        ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter"),
        ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter"),
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[torch.Tensor]]:
    """{layer name: its blobs as float32 tensors} of the layers that have weights."""
    net = net_parameter()()
    try:
        net.ParseFromString(Path(path).read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    except Exception:
        raise CheckpointError(f"{path}: not a Caffe model (the protobuf does not parse as NetParameter)") from None
    layers = {}
    for layer in list(net.layer) + list(net.layers):
        if layer.blobs and "res075" not in layer.name and "res05" not in layer.name:
            layers[layer.name] = [_tensor(b) for b in layer.blobs]
    if not layers:
        raise CheckpointError(f"{path}: a Caffe model without weights (a .prototxt saved as binary?)")
    return layers


def _tensor(blob: Any) -> torch.Tensor:
    shape = list(blob.shape.dim) if blob.HasField("shape") else [blob.num, blob.channels, blob.height, blob.width]
    values = blob.data if len(blob.data) else blob.double_data
    data = torch.from_numpy(np.array(values, dtype=np.float32))  # 30x faster than via a list
    if data.numel() != int(torch.tensor(shape).prod()):
        shape = [data.numel()]  # legacy blobs of biases store 1x1x1xN: flatten
    return data.reshape(shape)


def recognise(layers: dict[str, list[torch.Tensor]], path: str | os.PathLike) -> Recognised:
    """Our preset, config and state dict for a DeepLab Caffe release."""
    fields = {"mean": tuple(m / 255 for m in reversed(BGR_MEAN)), "std": (1 / 255,) * 3}
    if "conv1_1" in layers:
        arch, config, state = _vgg(layers, path)
        first = "backbone.features.0.weight"
    elif "conv1" in layers and "bn_conv1" in layers:
        arch, config, state = _resnet(layers, path)
        first = "backbone.conv1.weight"
    else:
        names = ", ".join(list(layers)[:5])
        raise CheckpointError(
            f"{path}: a Caffe model that is neither DeepLab VGG-16 nor ResNet-101, first layers: {names}"
        )
    state[first] = state[first][:, [2, 1, 0]].contiguous()  # BGR -> RGB input channels
    return Recognised("DeepLab Caffe release (.caffemodel), BGR input reordered to RGB", arch, config, state, fields)


def _flat(blob: torch.Tensor) -> torch.Tensor:
    return blob.reshape(-1)


def _resnet(layers: dict, path: str | os.PathLike) -> tuple[str, dict, dict]:
    state: dict[str, torch.Tensor] = {}
    for name, blobs in layers.items():
        if name in RESNET_STEM:
            _put(state, *RESNET_STEM[name], blobs)
        elif unit := RESNET_UNIT.fullmatch(name):
            kind, stage, letter, number, branch = unit.groups()
            block = 0 if letter == "a" else (int(number) if number else ord(letter) - ord("a"))
            conv, bn = BRANCH[branch]
            _put(state, kind, f"backbone.layer{int(stage) - 1}.{block}.{conv if kind == 'res' else bn}", blobs)
        elif m := re.fullmatch(r"fc1_\w+_c(\d)", name):
            if len(blobs) < 2:
                raise CheckpointError(
                    f"{path}: Caffe layer {name} has {len(blobs)} blob(s), a weight and a bias expected"
                )
            state[f"classifier.branches.{m.group(1)}.weight"] = blobs[0]
            state[f"classifier.branches.{m.group(1)}.bias"] = _flat(blobs[1])
    branches = {k.split(".")[2] for k in state if k.startswith("classifier.branches.")}
    units = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    if len(branches) != 4 or len(units) != 23:
        raise CheckpointError(
            f"{path}: a Caffe ResNet with {len(units)} res4 units and {len(branches)} fc1 branches "
            "(DeepLab v2 ResNet-101 ASPP-L has 23 and 4)"
        )
    classes = int(state["classifier.branches.0.weight"].shape[0])
    config = resnet_config(classes, 8, (6, 12, 18, 24), stride_in_1x1=True, stem_ceil_mode=True)
    return "deeplabv2-resnet101", config, state


def _put(state: dict, kind: str, target: str, blobs: list[torch.Tensor]) -> None:
    """Store a Caffe conv ('res'), BatchNorm ('bn') or Scale ('scale') layer's blobs under ``target``."""
    if kind == "res":
        state[f"{target}.weight"] = blobs[0]
    elif kind == "bn":  # Caffe's BatchNorm: mean and variance sums, and their scale factor
        factor = float(blobs[2].reshape(-1)[0]) if len(blobs) > 2 else 1.0
        factor = 0.0 if factor == 0 else 1.0 / factor
        state[f"{target}.running_mean"] = _flat(blobs[0]) * factor
        state[f"{target}.running_var"] = _flat(blobs[1]) * factor
        state[f"{target}.num_batches_tracked"] = torch.tensor(0)
    else:  # Scale: the affine part of batch norm
        state[f"{target}.weight"], state[f"{target}.bias"] = _flat(blobs[0]), _flat(blobs[1])


def _vgg(layers: dict, path: str | os.PathLike) -> tuple[str, dict, dict]:
    state: dict[str, torch.Tensor] = {}
    for name, blobs in layers.items():
        if name.startswith("conv") and name[4:] in VGG_INDEX:
            target = f"backbone.features.{VGG_INDEX[name[4:]]}"
        elif m := re.fullmatch(r"(fc6|fc7|fc8)(?:_[a-z]\w*?)?(?:_(\d))?", name):
            layer, branch = m.group(1), int(m.group(2) or 1) - 1
            target = f"classifier.branches.{branch}.{layer}"
        else:
            continue
        if len(blobs) < 2:
            raise CheckpointError(f"{path}: Caffe layer {name} has {len(blobs)} blob(s), a weight and a bias expected")
        state[f"{target}.weight"], state[f"{target}.bias"] = blobs[0], _flat(blobs[1])
    branches = {k.split(".")[2] for k in state if k.startswith("classifier.branches.")}
    missing = [c for c, i in VGG_INDEX.items() if f"backbone.features.{i}.weight" not in state]
    if missing or len(branches) not in (1, 4):
        raise CheckpointError(
            f"{path}: a Caffe VGG-16 with {len(branches)} fc6 branches, missing conv{(missing or ['-'])[0]}"
        )
    classes = int(state["classifier.branches.0.fc8.weight"].shape[0])
    config = {"num_classes": classes, "output_stride": 8, "pool_ceil_mode": True}  # Caffe pools round up
    if len(branches) == 1:
        return "deeplabv1-vgg16-largefov", config | {"atrous_rates": (12,)}, state
    return "deeplabv2-vgg16-aspp-l", config | {"atrous_rates": (6, 12, 18, 24)}, state
