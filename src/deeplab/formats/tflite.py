"""TensorFlow Lite exports of TensorFlow's DeepLab model zoo (``.tflite``), read as our models.

The file is a flatbuffer; the ``tflite`` package (Python classes generated from TensorFlow's own
schema, no TensorFlow) parses it, so the reader follows the schema exactly and stays small. What is
read: every CONV_2D / DEPTHWISE_CONV_2D's weights and bias, dequantised ((q - zero point) x scale,
per tensor or per output channel; float32/float16 taken as they are), stride, dilation and fused
activation; the input tensor's quantisation (which is the normalisation: real = (q - zp) x scale).

Recognised graphs: DeepLab v3 on MobileNetV2 of any depth multiplier (TensorFlow's DeepLab
``mobilenet_v2`` with ``output_stride`` 8/16/32, batch norm folded into the conv biases, ReLU6),
(channels rounded to multiples of 8 at depth 1, not rounded below), with the head of its MobileNet models: an ASPP of a 1x1 branch and image pooling (no atrous
branches), a 1x1 projection, 1x1 logits, and a bilinear upsampling with ``align_corners=True``
(our preset ``deeplabv3-mobilenetv2-tf``). Batch norm is stored as identity after each conv.

Padding: TensorFlow's "SAME" equals our symmetric padding wherever a strided layer sees an odd size,
as at the sizes these graphs are exported for (16k + 1, e.g. 513); at other sizes the strided
layers are offset by half a pixel from TensorFlow's (an exportable graph cannot pad by parity).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeplab.checkpoint import CheckpointError
from deeplab.formats.common import Recognised

ARCH = "deeplabv3-mobilenetv2-tf"
PASS_THROUGH = {"QUANTIZE", "DEQUANTIZE", "ARG_MAX", "RESIZE_BILINEAR", "ADD", "CONCATENATION", "AVERAGE_POOL_2D"}
ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}  # tflite ActivationFunctionType
FLOAT_TYPES = {0: np.float32, 1: np.float16}
INT_TYPES = {2: np.int32, 3: np.uint8, 9: np.int8, 7: np.int16}
BN_EPS = 1e-5  # torch's BatchNorm2d default: running_var = 1 - eps makes it the identity


@dataclass
class Conv:
    """One convolution of the graph, dequantised, in torch's layout."""

    weight: torch.Tensor  # out, in / groups, kh, kw
    bias: torch.Tensor
    stride: int
    dilation: int
    activation: str | None
    depthwise: bool
    source: int  # the tensor it reads
    output: int  # the tensor it writes


def recognise(path: str | os.PathLike) -> Recognised:
    """Our preset, config, state dict and normalisation for a TensorFlow DeepLab ``.tflite`` file."""
    graph = _Graph(path)
    backbone, head = graph.split_head()
    width = backbone[-1].weight.shape[0] / 320  # MobileNetV2's last block has 320 x width channels
    num_classes = int(head["logits"].weight.shape[0])
    output_stride = graph.output_stride(backbone)
    config = {
        "num_classes": num_classes,
        "output_stride": output_stride,
        "width_mult": width,
        "divisible_by": 8 if width == 1.0 else 1,  # TensorFlow DeepLab's MobileNetV2 rounding
        "head_channels": int(head["projection"].weight.shape[0]),
        "pooling_first": head["pooling_first"],
        "align_corners": True,  # TensorFlow DeepLab's resize_bilinear
    }
    state = _state(backbone, head, path)
    return Recognised("TensorFlow Lite DeepLab (TensorFlow model zoo)", ARCH, config, state, graph.normalisation())


class _Graph:
    """The operators of a .tflite file's first subgraph, with their tensors."""

    def __init__(self, path: str | os.PathLike) -> None:
        try:
            import tflite
            from tflite.BuiltinOperator import BuiltinOperator
        except ImportError:
            raise CheckpointError(
                f"{path}: reading .tflite files needs the tflite package: pip install tflite"
            ) from None
        self.path, self.tflite = path, tflite
        self.op_names = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        try:
            self.buffer = Path(path).read_bytes()
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read ({err.strerror})") from None
        if len(self.buffer) < 8 or self.buffer[4:8] != b"TFL3":
            raise CheckpointError(f"{path}: not a TensorFlow Lite model (no TFL3 flatbuffer identifier)")
        try:
            self.model = tflite.Model.GetRootAsModel(self.buffer, 0)
            self.graph = self.model.Subgraphs(0)
            self.ops = [self._op(i) for i in range(self.graph.OperatorsLength())]
        except CheckpointError:
            raise
        except Exception as err:  # the flatbuffer's offsets point outside the file: truncated or damaged
            raise CheckpointError(f"{path}: a damaged or truncated .tflite file ({type(err).__name__})") from None

    def _op(self, index: int) -> tuple[str, Any, list[int], list[int]]:
        op = self.graph.Operators(index)
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = self.op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        outputs = [op.Outputs(j) for j in range(op.OutputsLength())]
        return name, op, inputs, outputs

    def convs(self) -> list[Conv]:
        """Every convolution in graph order; one line naming an operator we do not map."""
        found = []
        for name, op, inputs, outputs in self.ops:
            if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                found.append(self._conv(name, op, inputs, outputs[0]))
            elif name not in PASS_THROUGH:
                raise CheckpointError(f"{self.path}: operator {name} is not supported in a DeepLab .tflite graph")
        if not found:
            raise CheckpointError(f"{self.path}: a TensorFlow Lite model without convolutions, not a DeepLab")
        return found

    def _conv(self, name: str, op: Any, inputs: list[int], output: int) -> Conv:
        depthwise = name == "DEPTHWISE_CONV_2D"
        options = self.tflite.DepthwiseConv2DOptions() if depthwise else self.tflite.Conv2DOptions()
        table = op.BuiltinOptions()
        options.Init(table.Bytes, table.Pos)
        weight = self.tensor(inputs[1])  # conv: out, kh, kw, in; depthwise: 1, kh, kw, out
        weight = weight.transpose(3, 0, 1, 2) if depthwise else weight.transpose(0, 3, 1, 2)
        bias = self.tensor(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else np.zeros(weight.shape[0], np.float32)
        activation = options.FusedActivationFunction()
        if activation not in ACTIVATIONS:
            raise CheckpointError(f"{self.path}: a convolution with fused activation {activation} is not supported")
        if options.StrideH() != options.StrideW() or options.DilationHFactor() != options.DilationWFactor():
            raise CheckpointError(f"{self.path}: a convolution with different strides or rates per axis")
        return Conv(
            torch.from_numpy(np.ascontiguousarray(weight, np.float32)),
            torch.from_numpy(np.ascontiguousarray(bias, np.float32)),
            options.StrideH(),
            options.DilationHFactor(),
            ACTIVATIONS[activation],
            depthwise,
            inputs[0],
            output,
        )

    def tensor(self, index: int) -> np.ndarray:
        """A constant tensor's values as float32, dequantised."""
        t = self.graph.Tensors(index)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        shape = tuple(int(s) for s in t.ShapeAsNumpy())
        kind = t.Type()
        if isinstance(data, int) or kind not in {**FLOAT_TYPES, **INT_TYPES}:
            raise CheckpointError(f"{self.path}: tensor {t.Name().decode()} has no constant data of a known type")
        dtype = FLOAT_TYPES.get(kind) or INT_TYPES[kind]
        values = np.frombuffer(data.tobytes(), dtype=dtype)
        if values.size != int(np.prod(shape)):
            raise CheckpointError(f"{self.path}: tensor {t.Name().decode()} holds {values.size} values for {shape}")
        values = values.reshape(shape).astype(np.float32)
        if kind in FLOAT_TYPES:
            return values
        q = t.Quantization()
        if q is None or not q.ScaleLength():
            raise CheckpointError(f"{self.path}: integer tensor {t.Name().decode()} without quantisation parameters")
        scale, zero = q.ScaleAsNumpy().astype(np.float32), q.ZeroPointAsNumpy().astype(np.float32)
        if scale.size > 1:  # per channel, along the quantised dimension
            axis = q.QuantizedDimension()
            view = [1] * values.ndim
            view[axis] = scale.size
            scale, zero = scale.reshape(view), zero.reshape(view)
        return (values - zero) * scale

    def normalisation(self) -> dict[str, Any]:
        """The input quantisation as our mean and std (real = (q - zp) x scale = (q/255 - mean) / std)."""
        t = self.graph.Tensors(self.graph.Inputs(0))
        q = t.Quantization()
        if q is None or not q.ScaleLength():  # float input: TensorFlow DeepLab's x / 127.5 - 1
            return {"mean": (0.5,) * 3, "std": (0.5,) * 3}
        scale, zero = float(q.ScaleAsNumpy()[0]), float(q.ZeroPointAsNumpy()[0])
        return {"mean": (zero / 255,) * 3, "std": (1 / (255 * scale),) * 3}

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(s) for s in self.graph.Tensors(index).ShapeAsNumpy())

    def producer(self, tensor: int) -> tuple[str, list[int]] | None:
        """The operator (name, inputs) that writes ``tensor``, through quantise/dequantise steps."""
        for name, _, inputs, outputs in self.ops:
            if tensor in outputs:
                if name in ("QUANTIZE", "DEQUANTIZE"):
                    return self.producer(inputs[0])
                return name, inputs
        return None

    def split_head(self) -> tuple[list[Conv], dict[str, Any]]:
        """The backbone's convolutions and the head's (image pooling, 1x1 branch, projection, logits)."""
        convs = self.convs()
        pools = [inputs[0] for name, _, inputs, _ in self.ops if name == "AVERAGE_POOL_2D"]
        if len(pools) != 1:
            raise CheckpointError(
                f"{self.path}: not a DeepLab v3 MobileNet graph ({len(pools)} average pools, its image pooling has 1)"
            )
        features = pools[0]
        by_source: dict[int, list[Conv]] = {}
        for conv in convs:
            by_source.setdefault(conv.source, []).append(conv)
        end = next((k for k, conv in enumerate(convs) if conv.output == features), None)
        pool_output = next(outputs[0] for name, _, _, outputs in self.ops if name == "AVERAGE_POOL_2D")
        branch = [c for c in by_source.get(features, []) if not c.depthwise]
        pooling = by_source.get(pool_output, [])
        concat = [(inputs, outputs[0]) for name, _, inputs, outputs in self.ops if name == "CONCATENATION"]
        if end is None or len(branch) != 1 or len(pooling) != 1 or len(concat) != 1:
            raise CheckpointError(
                f"{self.path}: a graph that is not DeepLab v3 on MobileNetV2 with its 1x1 + image pooling head "
                "(the v3+ decoder and ASPP with atrous branches of TensorFlow's exports are not supported)"
            )
        (parts, joined) = concat[0]
        projection = by_source.get(joined, [])
        logits = by_source.get(projection[0].output, []) if len(projection) == 1 else []
        if len(projection) != 1 or len(logits) != 1 or len(convs) != end + 5:
            raise CheckpointError(f"{self.path}: a DeepLab head that is not 1x1 + pooling, projection, logits")
        first = self.producer(parts[0])
        pooling_first = first is not None and first[0] == "RESIZE_BILINEAR"
        head = {"branch": branch[0], "pooling": pooling[0], "projection": projection[0], "logits": logits[0]}
        return convs[: end + 1], head | {"pooling_first": pooling_first}

    def output_stride(self, backbone: list[Conv]) -> int:
        """The input size over the backbone output's, rounded up to 8, 16 or 32."""
        size = self.shape(self.graph.Inputs(0))[1]
        out = self.shape(backbone[-1].output)[1]
        for stride in (8, 16, 32):
            if -(-size // stride) == out:
                return stride
        raise CheckpointError(f"{self.path}: backbone output {out} px for {size} px input: output stride not 8/16/32")


def _state(backbone: list[Conv], head: dict[str, Any], path: Any) -> dict[str, torch.Tensor]:
    """Our state dict (``models.mobilenet`` and ``heads.ASPPHead`` keys): each conv of the graph onto
    ours, each batch norm after it set to the identity (its shift holds the folded bias). Shapes are
    checked when the model loads them."""
    names = _mobilenet_names(backbone, path)
    names += ["classifier.0.convs.0.0", "classifier.0.convs.1.1", "classifier.0.project.0"]
    state: dict[str, torch.Tensor] = {}
    for name, conv in zip(names, [*backbone, head["branch"], head["pooling"], head["projection"]]):
        parent, _, index = name.rpartition(".")
        bn, n = f"{parent}.{int(index) + 1}", conv.bias.numel()  # the batch norm after conv a.b.N is a.b.N+1
        state[f"{name}.weight"] = conv.weight
        state[f"{bn}.weight"], state[f"{bn}.bias"] = torch.ones(n), conv.bias
        state[f"{bn}.running_mean"], state[f"{bn}.running_var"] = torch.zeros(n), torch.full((n,), 1 - BN_EPS)
        state[f"{bn}.num_batches_tracked"] = torch.tensor(0)
    state["classifier.1.weight"], state["classifier.1.bias"] = head["logits"].weight, head["logits"].bias
    return state


def _mobilenet_names(backbone: list[Conv], path: Any) -> list[str]:
    """Our conv names for the backbone's convs: the stem, then per inverted residual [expand], depthwise, project."""
    names, k, block = ["backbone.features.0.0"], 1, 1
    while k < len(backbone):
        expand = not backbone[k].depthwise
        if k + 1 + expand >= len(backbone) + (not expand) or not backbone[k + expand].depthwise:
            raise CheckpointError(f"{path}: convolution {k} does not fit MobileNetV2's inverted residual blocks")
        parts = ["conv.0.0", "conv.1.0", "conv.2"] if expand else ["conv.0.0", "conv.1"]
        names += [f"backbone.features.{block}.{part}" for part in parts]
        k, block = k + len(parts), block + 1
    return names
