"""ONNX export (dynamic height and width) and an onnxruntime model usable by the Segmenter.

Needs the optional extra ``export`` (onnx, onnxruntime). The model's meta (classes, palette,
mean, std, output stride) travels in the ONNX file's metadata as JSON.
"""

from __future__ import annotations

import dataclasses
import io
import json
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from deeplab.atomic import atomic_write

OPSET = 17
OPSET_RANGE = (9, 20)  # what torch's TorchScript ONNX exporter writes


def export_onnx(model: nn.Module, path: str | Path | io.BytesIO, opset: int = OPSET) -> None:
    """Write the model as ONNX: input "image" N,3,H,W (normalised), output "logits" N,C,H,W."""
    try:
        import onnx
    except ImportError:
        raise ValueError("ONNX export needs the extra: pip install 'deeplab[export]'") from None
    proto = onnx.load_from_string(onnx_bytes(model, opset))
    meta = {"output_stride": int(getattr(model, "output_stride", 1)), **_meta_dict(model)}
    proto.metadata_props.add(key="deeplab", value=json.dumps(meta))
    onnx.checker.check_model(proto)
    if isinstance(path, io.BytesIO):
        path.write(proto.SerializeToString())
        return
    atomic_write(path, lambda f: f.write(proto.SerializeToString()))


def onnx_bytes(model: nn.Module, opset: int = OPSET) -> bytes:
    """The bare ONNX graph of the model (no metadata, not re-checked): what a runtime compiles."""
    buffer = io.BytesIO()
    dynamic = {0: "batch", 2: "height", 3: "width"}
    dummy = torch.zeros(1, 3, 65, 65)
    training = model.training
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter, on purpose
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            model.eval(),
            (dummy,),
            buffer,  # type: ignore[arg-type]  # a file object is accepted at run time
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": dynamic, "logits": dynamic},
            opset_version=opset,
            dynamo=False,
        )
    model.train(training)
    return buffer.getvalue()


class OnnxModel(nn.Module):
    """An onnxruntime session behind the model interface: N,3,H,W tensor -> logits tensor."""

    def __init__(self, model_bytes: bytes, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        meta = json.loads(self.session.get_modelmeta().custom_metadata_map.get("deeplab", "{}"))
        self.output_stride = int(meta.pop("output_stride", 1))
        self.meta = SimpleNamespace(**meta) if meta else None

    @classmethod
    def from_model(cls, model: nn.Module, threads: int | None = None) -> OnnxModel:
        """Export a torch model in memory and open it with onnxruntime."""
        buffer = io.BytesIO()
        export_onnx(model, buffer)
        return cls(buffer.getvalue(), threads)

    @classmethod
    def from_file(cls, path: str | Path, threads: int | None = None) -> OnnxModel:
        """Open an exported .onnx file."""
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
        return cls(data, threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run(["logits"], {"image": image})[0])


def _meta_dict(model: nn.Module) -> dict[str, Any]:
    meta = getattr(model, "meta", None)
    if meta is None:
        return {}
    is_instance = dataclasses.is_dataclass(meta) and not isinstance(meta, type)
    raw = dataclasses.asdict(meta) if is_instance else dict(vars(meta))
    return json.loads(json.dumps(raw, default=list))
