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
        lib.define(
            "qnms(Tensor dets, Tensor scores, float iou_threshold, float scale, int zero_point) -> Tensor"
        )
        _KEEP.append(lib)
    except Exception:  # schemas already defined, or torch missing
        pass
    try:
        import torchvision
    except Exception:
        return None
    return torchvision


_KEEP: list = []
