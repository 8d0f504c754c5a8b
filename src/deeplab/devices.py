"""Devices: the default one, names checked before any work, and the precisions each can run."""

from __future__ import annotations

import ctypes

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "int8")  # int8: a quantised graph on OpenVINO (deeplab quantize)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the first GPU when there is one and none is named, else the CPU.

    Raises ValueError (one line) for a name torch does not know or a device this machine lacks.
    """
    if device is None:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no CUDA GPU on this machine")
        index = 0 if resolved.index is None else resolved.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
        return torch.device("cuda", index)
    if resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or mps")
    return resolved


def check_precision(precision: str, device: torch.device) -> None:
    """ValueError unless the device can run the precision: fp16 needs a GPU."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a GPU; use bf16 (or fp32) on the CPU")
    if precision == "int8" and device.type != "cpu":
        raise ValueError("precision int8 runs on the CPU (OpenVINO); use fp16 or bf16 on a GPU")


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision (None for fp32: no autocast)."""
    return {"fp32": None, "int8": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    return bool(
        getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(cpu, "_is_amx_tile_supported", lambda: False)()
    )


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation instead of handing it back to
    the system (no mmap for big blocks, no trimming); whether it could (False off glibc).

    Without this, every tensor over 32 MiB (a ResNet-101 layer's output at 513x513) is fresh
    memory that the kernel zeroes page by page: 81k page faults per image there. The
    inference commands call it; the memory a run has used stays with the process until it ends.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
