"""What the benchmarks print about the CPU: model, flags that decide the fast paths, a peak estimate."""

from __future__ import annotations

import os
from pathlib import Path

FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_info() -> tuple[str, set[str], float]:
    """(model name, flags, MHz) from /proc/cpuinfo (unknowns where it cannot be read)."""
    model, flags, mhz = "unknown CPU", set(), 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key == "flags" and not flags:
                flags = set(value.split())
            elif key == "cpu MHz" and not mhz:
                mhz = float(value)
    except (OSError, ValueError):
        pass
    return model, flags, mhz


def cpu_summary() -> str:
    model, flags, mhz = cpu_info()
    have = " ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    return f"{model}, {os.cpu_count()} logical CPUs at {mhz:.0f} MHz, flags: {have}"


def peak_gflops(threads: int) -> float:
    """fp32 peak estimate: threads x MHz x FLOPs per cycle (2 FMA units x vector width x 2)."""
    _, flags, mhz = cpu_info()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    return threads * mhz / 1000 * 2 * lanes * 2
