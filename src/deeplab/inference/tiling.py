"""Sliding windows for images of any size: window origins, blending ramps, exact resampling plans.

A window is resampled on exactly the grid the whole image would get at a scale, its origin and
size on the output-stride grid, so away from window borders tiles reproduce the untiled result.
"""

from __future__ import annotations

import math

import torch


def axis_plan(lo: int, hi: int, full: int, scaled: int, stride: int) -> tuple[slice, torch.Tensor, torch.Tensor]:
    """Resampling of the window [lo, hi) of an axis of length `full` resized to `scaled`.

    Returns the source slice to read, the matrix source -> scaled window (its first row and its
    length multiples of `stride` where possible) and the matrix scaled window -> [lo, hi), both
    bilinear like F.interpolate.
    """
    ratio = scaled / full
    j_lo = max(0, math.floor(lo * ratio) - 1) // stride * stride
    j_hi = j_lo + math.ceil((math.ceil(hi * ratio) + 1 - j_lo) / stride) * stride
    j_hi = min(scaled, j_hi)
    first = max(0.0, (j_lo + 0.5) / ratio - 0.5)
    a, b = int(first), min(full, int((j_hi - 0.5) / ratio - 0.5) + 2)
    to_scaled = resize_matrix(j_lo, j_hi, full, scaled, a, b)
    back = resize_matrix(lo, hi, scaled, full, j_lo, j_hi)
    return slice(a, b), to_scaled, back


def resize_matrix(start: int, stop: int, src_size: int, dst_size: int, lo: int, hi: int) -> torch.Tensor:
    """Rows start..stop of the bilinear (align_corners=False) resize src_size -> dst_size,
    restricted to source indices lo..hi-1 (indices outside are clamped into that range)."""
    dst = torch.arange(start, stop, dtype=torch.float64)
    src = ((dst + 0.5) * (src_size / dst_size) - 0.5).clamp(min=0)
    i0 = src.floor()
    frac = src - i0
    i0 = i0.long()
    rows = torch.arange(stop - start)
    matrix = torch.zeros(stop - start, hi - lo, dtype=torch.float64)
    matrix.index_put_((rows, i0.clamp(lo, hi - 1) - lo), 1 - frac, accumulate=True)
    matrix.index_put_((rows, (i0 + 1).clamp(lo, min(hi, src_size) - 1) - lo), frac, accumulate=True)
    return matrix.float()


def resample(x: torch.Tensor, matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """``matrix`` (a ``resize_matrix``: at most two weights per row) applied along ``dim`` of ``x``:
    two gathers and a weighted sum instead of a dense product (O(n), not O(n^2), per line)."""
    order = matrix.abs().argsort(dim=1, descending=True, stable=True)[:, :2]  # the two largest weights
    weights = matrix.gather(1, order).to(x.dtype)
    if bool((weights[:, 0] == 1).all()) and (matrix.shape[1] == 1 or not weights[:, 1].any()):  # a selection
        picked = order[:, 0]
        start = int(picked[0])
        if torch.equal(picked, torch.arange(start, start + len(picked))):
            return x.narrow(dim, start, len(picked))  # a window of x at scale 1: a view, no arithmetic
        return x.index_select(dim, picked)
    shape = [1] * x.dim()
    shape[dim] = matrix.shape[0]
    first = x.index_select(dim, order[:, 0]) * weights[:, 0].view(shape)
    return first.add_(x.index_select(dim, order[:, 1]) * weights[:, 1].view(shape))


def window_starts(length: int, size: int, step: int) -> list[int]:
    """Window origins covering [0, length) with windows of `size`, the last flush with the end."""
    starts = list(range(0, max(length - size, 0), step))
    return starts + [max(length - size, 0)]


def ramp(size: int, overlap: int) -> torch.Tensor:
    """Blending weights: rise linearly over `overlap` pixels at both ends, 1 in between, never 0."""
    i = torch.arange(size, dtype=torch.float32)
    return torch.clamp(torch.minimum(i + 1, size - i), max=overlap + 1.0) / (overlap + 1)
