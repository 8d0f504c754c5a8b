"""The authors' Caffe releases: small .caffemodel files written through the same protobuf schema,
with the releases' layer names, load and give the Caffe network's logits."""

import re

import pytest
import torch
import torch.nn.functional as F
from test_kazuto import kazuto_input, our_input

from deeplab import build_model, load_model
from deeplab.checkpoint import CheckpointError
from peers import KazutoDeepLabV2
from tv import randomise_batchnorm

pytest.importorskip("google.protobuf")
from deeplab.formats.caffe import net_parameter  # noqa: E402


def add_blob(layer, tensor, legacy=False):
    blob = layer.blobs.add()
    if legacy:  # the old num/channels/height/width fields; biases as 1x1x1xN
        dims = list(tensor.shape) if tensor.dim() == 4 else [1, 1, 1, tensor.numel()]
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(tensor.shape)
    blob.data.extend(tensor.flatten().tolist())


def caffe_resnet_name(key):
    """Caffe layer name and kind of one of kazuto's keys (the inverse of its conversion)."""
    key = key.removeprefix("base.")
    if key.startswith("layer1.conv1."):
        return ("conv1", "conv") if ".conv." in key else ("bn_conv1", "bn")
    if key.startswith("aspp.c"):
        return f"fc1_voc12_c{key[6]}", "fc"
    stage, block, part, kind = re.match(r"layer(\d)\.block(\d+)\.(\w+)\.(conv|bn)\.", key).groups()
    blocks = {2: 3, 3: 4, 4: 23, 5: 3}[int(stage)]
    letter = "abc"[int(block) - 1] if blocks == 3 else ("a" if block == "1" else f"b{int(block) - 1}")
    branch = {"shortcut": "1", "reduce": "2a", "conv3x3": "2b", "increase": "2c"}[part]
    return f"{'res' if kind == 'conv' else 'bn'}{stage}{letter}_branch{branch}", kind


def write_resnet(reference, path):
    net = net_parameter()(name="deeplab_v2_resnet101")
    layers = {}
    state = reference.state_dict()
    for key, value in state.items():
        name, kind = caffe_resnet_name(key)
        layers.setdefault((name, kind), {})[key.rsplit(".", 1)[1]] = value
    factor = 999.98  # Caffe's BatchNorm keeps sums and this scale factor
    for (name, kind), params in layers.items():
        layer = net.layer.add(name=name, type={"conv": "Convolution", "bn": "BatchNorm", "fc": "Convolution"}[kind])
        if kind == "bn":
            for blob in (params["running_mean"] * factor, params["running_var"] * factor, torch.tensor([factor])):
                add_blob(layer, blob)
            scale = net.layer.add(name=name.replace("bn", "scale", 1), type="Scale")
            add_blob(scale, params["weight"])
            add_blob(scale, params["bias"])
        else:
            add_blob(layer, params["weight"])
            if "bias" in params:
                add_blob(layer, params["bias"])
    copy = net.layer.add(name="res075_res2a_branch1", type="Convolution")  # an MSC copy: skipped
    add_blob(copy, torch.zeros(2, 2, 1, 1))
    path.write_bytes(net.SerializeToString())


def test_the_resnet_release_gives_the_caffe_networks_logits(tmp_path):
    torch.manual_seed(0)
    reference = KazutoDeepLabV2(num_classes=4).eval()
    randomise_batchnorm(reference)
    write_resnet(reference, tmp_path / "train2_iter_20000.caffemodel")
    model = load_model(tmp_path / "train2_iter_20000.caffemodel")
    assert model.meta.arch == "deeplabv2-resnet101" and model.meta.config["stride_in_1x1"]
    rgb = torch.rand(1, 3, 50, 66)
    with torch.no_grad():
        theirs = F.interpolate(reference(kazuto_input(rgb)), size=(50, 66), mode="bilinear", align_corners=False)
        ours = model(our_input(rgb, model.meta))
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4


@pytest.mark.parametrize("arch", ["deeplabv1-vgg16-largefov", "deeplabv2-vgg16-aspp-l"])
def test_the_vgg_releases_load_from_legacy_layers(tmp_path, arch):
    torch.manual_seed(0)
    caffe = build_model(arch, num_classes=3, pool_ceil_mode=True).eval()  # the Caffe network, BGR input
    net = net_parameter()()
    convs = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3"]
    indices = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    names = {f"backbone.features.{i}": f"conv{c}" for c, i in zip(convs, indices)}
    for b in range(len(caffe.classifier.branches)):
        suffix = "" if arch.startswith("deeplabv1") else f"_{b + 1}"
        for fc in ("fc6", "fc7"):
            names[f"classifier.branches.{b}.{fc}"] = fc + suffix
        names[f"classifier.branches.{b}.fc8"] = f"fc8_voc12{suffix}"
    state = caffe.state_dict()
    for ours, name in names.items():
        layer = net.layers.add(name=name, type=4)  # V1LayerParameter, type CONVOLUTION
        add_blob(layer, state[f"{ours}.weight"], legacy=True)
        add_blob(layer, state[f"{ours}.bias"], legacy=True)
    (tmp_path / "model.caffemodel").write_bytes(net.SerializeToString())
    model = load_model(tmp_path / "model.caffemodel")
    assert model.meta.arch == arch
    rgb = torch.rand(1, 3, 48, 62)  # even sizes: Caffe's pools round up
    with torch.no_grad():
        theirs, ours = caffe(kazuto_input(rgb)), model(our_input(rgb, model.meta))
    assert ((ours - theirs).abs().max() / theirs.abs().max()).item() < 1e-4


def test_a_file_that_is_not_a_caffemodel_is_a_one_line_error(tmp_path):
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff\xfe not protobuf \x00\x01")
    with pytest.raises(CheckpointError, match=r"junk\.caffemodel: not a Caffe model"):
        load_model(tmp_path / "junk.caffemodel")
    net = net_parameter()()
    layer = net.layer.add(name="conv1_1_other")
    add_blob(layer, torch.zeros(1, 1, 1, 1))
    (tmp_path / "other.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(CheckpointError, match=r"other\.caffemodel: a Caffe model that is neither"):
        load_model(tmp_path / "other.caffemodel")


def test_a_conv_without_its_bias_blob_is_a_one_line_error(tmp_path):
    net = net_parameter()()
    layer = net.layer.add(name="conv1_1")
    add_blob(layer, torch.zeros(64, 3, 3, 3))  # the weight, no bias
    (tmp_path / "nobias.caffemodel").write_bytes(net.SerializeToString())
    with pytest.raises(CheckpointError, match=r"nobias\.caffemodel: Caffe layer conv1_1 has 1 blob\(s\)"):
        load_model(tmp_path / "nobias.caffemodel")
