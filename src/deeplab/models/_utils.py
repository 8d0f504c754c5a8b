"""The two rules every backbone shares: where atrous convolution replaces striding, and weight init."""

from __future__ import annotations

from torch import nn

OUTPUT_STRIDES = (8, 16, 32)


def check_output_stride(output_stride: int) -> None:
    """Raise ValueError unless output_stride is 8, 16 or 32."""
    if output_stride not in OUTPUT_STRIDES:
        raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")


class AtrousPlan:
    """The stride-to-rate rule of atrous convolution (v2 Sec. 3.1, v3 Sec. 3.1).

    Walk the network's strided layers in order: a layer whose stride would take the feature map
    below 1/output_stride keeps stride 1 and multiplies the atrous rate of what follows by that
    stride instead, so an H x W input gives a ceil(H/os) x ceil(W/os) map.
    """

    def __init__(self, output_stride: int, current_stride: int = 1) -> None:
        check_output_stride(output_stride)
        self.output_stride, self.current_stride, self.rate = output_stride, current_stride, 1

    def step(self, stride: int) -> tuple[int, bool]:
        """(the stride this layer really uses, whether it became atrous); updates the rate."""
        if self.current_stride * stride > self.output_stride:
            self.rate *= stride
            return 1, True
        self.current_stride *= stride
        return stride, False


def init_weights(module: nn.Module) -> None:
    """He (fan_out) convs with zero bias, batch norm to identity: torchvision's backbone init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
