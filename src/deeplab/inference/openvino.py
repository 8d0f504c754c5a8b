"""An OpenVINO model usable by the Segmenter (``backend="openvino"``, or "auto"): the fastest CPU
runtime measured here (benchmarks/bench_inference.py).

Forks: once OpenVINO has compiled a model, forking this process is unsafe; it says so to the fork
rule (``deeplab.forks``), which every loader asks, and keeps its compiled models alive in forked
children (a child that destroys one hangs).

The model goes through our ONNX export (``inference.onnx``) and OpenVINO's CPU plugin compiles it,
with dynamic batch, height and width; fp32 keeps fp32 arithmetic (``INFERENCE_PRECISION_HINT``
f32: labels equal to the torch path's), bf16 uses the CPU's native bf16 (AVX512-BF16 / AMX).
The converted model is kept on disk (``inference.cache``): the export takes seconds, reading it
back and compiling well under one (figures: benchmarks/bench_inference.py, docs/benchmarks.md).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deeplab import forks
from deeplab.devices import fast_bf16
from deeplab.inference import cache
from deeplab.inference.onnx import OPSET, onnx_bytes

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the graph's own int8 ops, the rest f32
MODEL_FILE = "model.xml"  # OpenVINO's IR in a cache entry (and model.bin beside it)


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
            raise ValueError(f"the openvino backend runs fp32, bf16 or int8, not {precision!r}")
        if precision == "bf16" and not fast_bf16():
            warnings.warn("this CPU has no native bf16 (AVX512-BF16/AMX): OpenVINO will compute in fp32", stacklevel=3)
        self.output_stride = int(getattr(model, "output_stride", 1))
        self.meta = getattr(model, "meta", None)
        core = ov.Core()
        network, entry = _int8_network(model) if precision == "int8" else _network(core, model)
        if entry is not None:
            core.set_property({"CACHE_DIR": str(entry / "compiled")})
        config = {
            "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(network, "CPU", config)
        if entry is not None:
            cache.seal(entry)  # OpenVINO has written its compiled blob into the entry by now
        self._labelled: Any = None
        self._core, self._network, self._config, self._entry = core, network, config, entry
        forks.mark_fork_unsafe("OpenVINO")
        forks.keep_in_child(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.array(self.compiled(image)[0], copy=True))

    def labels(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(highest logit, its class) N,H,W: the graph with a TopK over the classes appended, so
        that only the labels leave the runtime, not C full-size maps of logits (compiled once, cached)."""
        if self._labelled is None:
            self._labelled = self._compile_labelled()
        image = np.ascontiguousarray(x.detach().float().cpu().numpy())
        top, best = self._labelled(image).to_tuple()
        return torch.from_numpy(np.array(top[:, 0], copy=True)), torch.from_numpy(best[:, 0].astype(np.int64))

    def _compile_labelled(self) -> Any:
        import openvino as ov
        from openvino import opset13

        network = self._core.read_model(self._network) if isinstance(self._network, str) else self._network.clone()
        logits = network.get_results()[0].input_value(0)  # what the Result node reads
        k = opset13.constant(np.array(1, dtype=np.int64))
        topk = opset13.topk(logits, k, axis=1, mode="max", sort="none", index_element_type="i32")
        labelled = ov.Model([topk.output(0), topk.output(1)], network.get_parameters(), "labels")
        compiled = self._core.compile_model(labelled, "CPU", self._config)
        if self._entry is not None:
            cache.seal(self._entry)  # its compiled blob went into the entry too
        return compiled


def _int8_network(model: nn.Module) -> tuple[Any, Path | None]:
    """The quantised graph a checkpoint carries (``deeplab quantize``), as a cache entry's path."""
    int8 = getattr(getattr(model, "meta", None), "int8", None)
    if not int8:
        raise ValueError(
            "the model has no int8 graph: make one with "
            "deeplab quantize --weights W --calibration PHOTOS/ -o W-int8.pt, then use W-int8.pt"
        )
    xml, weights = bytes(int8["xml"].numpy()), bytes(int8["bin"].numpy())

    def write(folder: Path) -> None:
        (folder / "int8.xml").write_bytes(xml)
        (folder / "int8.bin").write_bytes(weights)

    key = hashlib.sha256(xml + weights).hexdigest()[:32]
    entry = cache.lookup("openvino-int8", key) or cache.store("openvino-int8", key, write)
    if entry is not None:
        return str(entry / "int8.xml"), entry
    with tempfile.TemporaryDirectory() as tmp:  # the cache is off: read it from a temporary copy
        write(Path(tmp))
        import openvino as ov

        return ov.Core().read_model(str(Path(tmp) / "int8.xml")), None


def _network(core: Any, model: nn.Module) -> tuple[Any, Path | None]:
    """The model for ``core.compile_model``: the path of its cache entry (OpenVINO then also caches
    the compiled model there), or where the cache is off or refuses, the exported network."""
    import openvino as ov

    key = cache.fingerprint(model, f"openvino {ov.__version__}", f"opset {OPSET}")
    entry = cache.lookup("openvino", key)
    if entry is not None:  # complete (written whole, then renamed), by this OpenVINO (in the key)
        return str(entry / MODEL_FILE), entry
    root = cache.cache_root()
    log.info("converting the model for OpenVINO (%s)", f"once: cached in {root}" if root else "the cache is off")
    with tempfile.TemporaryDirectory() as tmp:  # OpenVINO reads ONNX from a file
        path = Path(tmp) / "model.onnx"
        path.write_bytes(onnx_bytes(model))
        network = core.read_model(str(path))
    entry = cache.store(
        "openvino", key, lambda folder: ov.save_model(network, str(folder / MODEL_FILE), compress_to_fp16=False)
    )
    return (network, None) if entry is None else (str(entry / MODEL_FILE), entry)
