"""An OpenVINO model usable by the Segmenter (``backend="openvino"``, or "auto"): the fastest CPU
runtime measured here (benchmarks/bench_inference.py).

Forks: a compiled model destroyed in a forked child (a DataLoader worker collecting garbage it
inherited) waits forever for threads that only the parent has. So in a forked child every
compiled model alive at the fork is kept alive for good (``_keep_in_child``); children that use
OpenVINO themselves must load their own models.

The model goes through our ONNX export (``inference.onnx``) and OpenVINO's CPU plugin compiles it,
with dynamic batch, height and width; fp32 keeps fp32 arithmetic (``INFERENCE_PRECISION_HINT``
f32: labels equal to the torch path's), bf16 uses the CPU's native bf16 (AVX512-BF16 / AMX).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from deeplab.devices import fast_bf16
from deeplab.inference.onnx import onnx_bytes

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}
_COMPILED: weakref.WeakSet = weakref.WeakSet()  # the OpenVinoModels alive in this process


def _keep_in_child() -> None:
    """After a fork, in the child: never destroy the compiled models inherited from the parent."""
    for model in list(_COMPILED):
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(model.compiled))


os.register_at_fork(after_in_child=_keep_in_child)


def openvino_available() -> bool:
    """Whether the openvino package can be imported."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


class OpenVinoModel(nn.Module):
    """A compiled OpenVINO model behind the model interface: N,3,H,W tensor -> logits tensor."""

    def __init__(self, model: nn.Module, precision: str = "fp32", threads: int | None = None) -> None:
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise ValueError("the openvino backend needs the extra: pip install 'deeplab[openvino]'") from None
        if precision not in PRECISIONS:
            raise ValueError(f"the openvino backend runs fp32 or bf16, not {precision!r}")
        if precision == "bf16" and not fast_bf16():
            warnings.warn("this CPU has no native bf16 (AVX512-BF16/AMX): OpenVINO will compute in fp32", stacklevel=3)
        self.output_stride = int(getattr(model, "output_stride", 1))
        self.meta = getattr(model, "meta", None)
        core = ov.Core()
        with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads ONNX from a file
            path = Path(tmp) / "model.onnx"
            path.write_bytes(onnx_bytes(model))
            network = core.read_model(str(path))
        config = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(network, "CPU", config)
        _COMPILED.add(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.array(self.compiled(image)[0], copy=True))
