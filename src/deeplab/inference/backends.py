"""What the Segmenter runs: the model made fast (batch norm folded, channels_last, torch.compile), an
onnxruntime session or an OpenVINO compiled model; "auto" picks OpenVINO on the CPU where installed.

OpenVINO is faster per image on the CPU (benchmarks/bench_inference.py) but costs a set-up (ONNX
export + compile: 1.8 s for deeplabv3plus-mobilenetv2, 5.2 s for deeplabv3-resnet101, against
0.2-0.7 s for the torch path), so the Segmenter's default stays torch and the CLI's "auto" takes
OpenVINO only for runs of enough pixels (``backend_for_run``)."""

from __future__ import annotations

import copy
import inspect

import torch
from torch import nn


def prepare_model(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """A fast inference copy of the model: eval mode, batch norm folded, channels_last.

    ``compile=True`` adds torch.compile (inductor, weights frozen); each new input size compiles
    again, so it pays off for fixed sizes (tiles) and long runs.
    """
    fast = fold_batchnorm(model)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    return torch.compile(fast, options={"freezing": True}) if compile else fast


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the model with each BatchNorm2d that follows a Conv2d folded into it."""
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in _conv_bn_pairs(folded):
        conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
        _replace(folded, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn))
        _replace(folded, bn_name, nn.Identity())
    return folded


def _conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) module names where the conv's only consumer is the bn, found by tracing."""
    concrete = {
        name: p.default
        for name, p in list(inspect.signature(model.forward).parameters.items())[1:]
        if p.default is not inspect.Parameter.empty
    }
    try:
        graph = torch.fx.symbolic_trace(model, concrete_args=concrete).graph
    except Exception:  # untraceable forward: fall back to registration order
        return _sibling_pairs(model)
    modules = dict(model.named_modules())
    calls = [n.target for n in graph.nodes if n.op == "call_module"]
    pairs = []
    for node in graph.nodes:
        prev = node.args[0] if node.op == "call_module" and node.args else None
        if (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(prev, torch.fx.Node)
            and prev.op == "call_module"
            and isinstance(modules.get(prev.target), nn.Conv2d)
            and len(prev.users) == 1
            and calls.count(prev.target) == 1
            and calls.count(node.target) == 1
        ):
            pairs.append((prev.target, node.target))
    return pairs


def _sibling_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv, bn) pairs registered one after the other in the same parent, channels matching."""
    pairs = []
    for parent_name, parent in model.named_modules():
        children = list(parent.named_children())
        for (a, conv), (b, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                prefix = f"{parent_name}." if parent_name else ""
                pairs.append((prefix + a, prefix + b))
    return pairs


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
# Pixels from which OpenVINO's set-up pays off: about 26 images of 513x513 for both presets measured
# (2 threads; set-up 1.8 s vs 0.2 s and 0.158 vs 0.223 s per image for deeplabv3plus-mobilenetv2,
# 5.2 s vs 0.7 s and 1.07 vs 1.24 s for deeplabv3-resnet101); 32 such images.
OPENVINO_MIN_PIXELS = 32 * 513 * 513


def backend_for_run(backend: str, pixels: int) -> str:
    """The backend for a run over ``pixels`` image pixels in all: "auto" stays "auto" (OpenVINO
    where installed) when they are enough for OpenVINO's set-up to pay off, else it is torch."""
    return "torch" if backend == "auto" and pixels < OPENVINO_MIN_PIXELS else backend


def choose_backend(backend: str, device: torch.device, precision: str, optimize: bool, compile: bool) -> str:
    """The backend "auto" stands for: OpenVINO for optimised fp32/bf16 inference on the CPU when it is
    installed (faster than the torch path there, benchmarks/bench_inference.py), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return backend
    from deeplab.devices import fast_bf16
    from deeplab.inference.openvino import openvino_available

    native = precision == "fp32" or (precision == "bf16" and fast_bf16())
    cpu_fast = device.type == "cpu" and optimize and not compile and native
    return "openvino" if cpu_fast and openvino_available() else "torch"


def build_backend(model: nn.Module, backend: str, precision: str, optimize: bool, compile: bool) -> nn.Module:
    """The module the Segmenter runs for a chosen (not "auto") backend."""
    if backend == "onnxruntime":
        if precision != "fp32":
            raise ValueError("the onnxruntime backend runs fp32 only; use precision='fp32'")
        from deeplab.inference.onnx import OnnxModel

        return OnnxModel.from_model(model)
    if backend == "openvino":
        from deeplab.inference.openvino import OpenVinoModel

        return OpenVinoModel(model, precision)
    return prepare_model(model, compile=compile) if optimize else model.eval()
