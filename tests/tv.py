"""Import torchvision for parity tests and benchmarks only (the package never needs it).

The torchvision wheel on this machine is a CUDA build whose C++ ops fail to register against
the CPU torch; defining the `nms`/`qnms` schemas first lets the pure-Python parts import.
"""

from __future__ import annotations

import types


def import_torchvision() -> types.ModuleType | None:
    """Return the torchvision module, or None where it cannot be imported."""
    try:
        import torch

        lib = torch.library.Library("torchvision", "DEF")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point) -> Tensor")
        _KEEP.append(lib)
    except Exception:  # schemas already defined, or torch missing
        pass
    try:
        import torchvision
    except Exception:
        return None
    return torchvision


_KEEP: list = []


def randomise_batchnorm(model) -> None:
    """Non-trivial BN statistics and affine parameters, so parity tests exercise batch norm."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
