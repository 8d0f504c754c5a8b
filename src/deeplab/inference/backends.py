"""What the Segmenter runs: the model made fast (batch norm folded, channels_last, torch.compile), an
onnxruntime session or an OpenVINO compiled model; "auto" (the default) picks OpenVINO on the CPU
where installed.

OpenVINO is faster per image on the CPU; its set-up is the ONNX export once per model (seconds),
then reading the cached conversion (``inference.cache``), about as quick as the torch path's
batch-norm folding. Figures: benchmarks/bench_inference.py, docs/benchmarks.md."""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import cast

import torch
from torch import nn


def prepare_model(model: nn.Module, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """A fast inference copy of the model: eval mode, batch norm folded, channels_last.

    ``compile=True`` adds torch.compile (inductor, weights frozen); each new input size compiles
    again, so it pays off for fixed sizes (tiles) and long runs.
    """
    fast = fold_batchnorm(model)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in torch's stubs
    return cast(nn.Module, torch.compile(fast, options={"freezing": True})) if compile else fast


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of the model with each BatchNorm2d that follows a Conv2d folded into it."""
    folded = copy.deepcopy(model).eval()
    for conv_name, bn_name in _conv_bn_pairs(folded):
        conv = cast(nn.Conv2d, folded.get_submodule(conv_name))
        bn = cast(nn.BatchNorm2d, folded.get_submodule(bn_name))
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
            pairs.append((str(prev.target), str(node.target)))
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


def choose_backend(backend: str, device: torch.device, precision: str, optimize: bool, compile: bool) -> str:
    """The backend "auto" stands for: OpenVINO for optimised fp32/bf16 inference on the CPU when it is
    installed (faster than the torch path there, benchmarks/bench_inference.py), else torch."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if precision == "int8":  # a quantised graph runs on OpenVINO only: never a silent fp32 instead
        from deeplab.inference.openvino import openvino_available

        if backend not in ("auto", "openvino"):
            raise ValueError(f"precision int8 runs on the openvino backend, not {backend}")
        if not openvino_available():
            raise ValueError("precision int8 runs on OpenVINO: pip install 'deeplab[openvino]'")
        return "openvino"
    if backend != "auto":
        return backend
    from deeplab.devices import fast_bf16
    from deeplab.inference.openvino import openvino_available

    native = precision == "fp32" or (precision == "bf16" and fast_bf16())
    cpu_fast = device.type == "cpu" and optimize and not compile and native
    return "openvino" if cpu_fast and openvino_available() else "torch"


def build_chosen(
    model: nn.Module, backend: str, device: torch.device, precision: str, optimize: bool, compile: bool
) -> tuple[str, nn.Module]:
    """The backend that runs (``choose_backend``) and its module; where "auto" chose OpenVINO and it
    cannot convert the model (an operator it lacks), a warning and the torch path."""
    chosen = choose_backend(backend, device, precision, optimize, compile)
    try:
        return chosen, build_backend(model, chosen, precision, optimize, compile)
    except Exception as err:
        if backend != "auto" or chosen == "torch" or precision == "int8":
            raise
        warnings.warn(f"OpenVINO cannot run this model ({err}); running it with torch", stacklevel=3)
        return "torch", build_backend(model, "torch", precision, optimize, compile)


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
